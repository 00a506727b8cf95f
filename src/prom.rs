//! Prometheus wire formats.
//!
//! - [`parse_exposition`]: the text exposition format 0.0.4, what `/metrics` endpoints
//!   serve. Malformed lines are skipped and reported as [`ParseIssue`]s; the parser never
//!   fails as a whole, never panics and runs in time linear in the input.
//! - [`parse_query_range`]: the JSON body of `GET /api/v1/query_range` (and of
//!   `/api/v1/query`), turned into [`SeriesColumn`]s.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::data::{SeriesColumn, SeriesId, Timestamp};

/// The metric types a `# TYPE` line may declare (format 0.0.4).
const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// The longest excerpt of the input quoted in a message, in characters.
const EXCERPT: usize = 40;

// ============================================================================
// Text exposition format
// ============================================================================

/// One line the parser skipped, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseIssue {
    /// The line's number, counting from 1.
    pub line: usize,
    /// A lowercase reason naming what was expected, e.g. ``expected `=` after label name `job` ``.
    /// Excerpts of the input in it are cut to 40 characters.
    pub message: String,
}

/// The samples of an exposition, in the order they appear, and the lines skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// Every well-formed sample line, in input order. Histogram (`_bucket` with `le`,
    /// `_sum`, `_count`) and summary (`quantile`, `_sum`, `_count`) lines are ordinary
    /// series here.
    pub samples: Vec<Sample>,
    /// Every malformed line, in input order; such a line contributes nothing else.
    pub issues: Vec<ParseIssue>,
    /// `# TYPE` declarations: metric family name → type word (counter, gauge, histogram,
    /// summary, untyped), lowercased.
    pub types: BTreeMap<String, String>,
}

/// One sample line: the series, its value and its optional timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name and the (unescaped) labels.
    pub id: SeriesId,
    /// The value; NaN and ±infinity are possible.
    pub value: f64,
    /// The timestamp written on the line, if any (milliseconds since the epoch).
    pub timestamp: Option<Timestamp>,
}

/// Parses a Prometheus text exposition (format 0.0.4).
///
/// Accepts LF or CRLF line endings, blank lines, comments, `# HELP name text` (the text is
/// not kept) and `# TYPE name type` (recorded in [`Exposition::types`]), and sample lines
/// `name{label="value",...} value [timestamp]`:
///
/// - metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`;
/// - an optional label set, possibly empty (`{}`), possibly with a trailing comma, with
///   spaces or tabs allowed around every token;
/// - label values in double quotes with the escapes `\\`, `\"` and `\n` decoded; any other
///   escape (`\t`) is kept as written, backslash included, as Prometheus does;
/// - the value as Go's `ParseFloat` reads it in decimal: `1`, `-1.5e-3`, `.5`, and `NaN`,
///   `Inf`, `+Inf`, `-Inf`, `Infinity` in any case (hexadecimal floats are not accepted);
/// - an optional timestamp: integer milliseconds, possibly negative.
///
/// Every malformed line is skipped and reported as a [`ParseIssue`], and parsing goes on
/// with the next line. Malformed means: a syntax error; a duplicated label name; the
/// reserved label `__name__`; a value that overflows a 64-bit float; a `_bucket` series
/// without an `le` label or whose `le` is not a number (unless `name_bucket` has its own
/// `# TYPE` line and is so a family of its own); a `# HELP`/`# TYPE` line without a valid
/// metric name; a `# TYPE` line with an unknown type or for a family already declared (the
/// first declaration stays).
///
/// Never panics, whatever the input, and takes time linear in its length.
pub fn parse_exposition(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let b = line.as_bytes();
        let start = skip_ws(b, 0);
        if start == b.len() {
            continue;
        }
        let result = if b[start] == b'#' {
            parse_comment(&line[start + 1..], &mut out.types)
        } else {
            match parse_sample(line, start, &out.types) {
                Ok(s) => {
                    out.samples.push(s);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        if let Err(message) = result {
            out.issues.push(ParseIssue { line: n + 1, message });
        }
    }
    out
}

/// A comment line, after its `#`: `HELP` and `TYPE` are checked, `TYPE` recorded; anything
/// else is a plain comment.
fn parse_comment(rest: &str, types: &mut BTreeMap<String, String>) -> Result<(), String> {
    let b = rest.as_bytes();
    let i = skip_ws(b, 0);
    let kw_end = token_end(b, i);
    let kw = &rest[i..kw_end];
    if kw != "HELP" && kw != "TYPE" {
        return Ok(());
    }
    let i = skip_ws(b, kw_end);
    if i == b.len() {
        return Err(format!("expected a metric name after `# {kw}`"));
    }
    let name_end = token_end(b, i);
    let name = &rest[i..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name `{}` in `# {kw}` (expected [a-zA-Z_:][a-zA-Z0-9_:]*)", excerpt(name)));
    }
    if kw == "HELP" {
        // The help text (with its `\\` and `\n` escapes) is free-form and not kept.
        return Ok(());
    }
    let i = skip_ws(b, name_end);
    let word_end = token_end(b, i);
    let word = &rest[i..word_end];
    if word.is_empty() {
        return Err(format!("expected a metric type after `# TYPE {name}` (counter, gauge, histogram, summary or untyped)"));
    }
    let Some(kind) = TYPES.iter().find(|t| t.eq_ignore_ascii_case(word)) else {
        return Err(format!(
            "unknown metric type `{}` for `{name}` (expected counter, gauge, histogram, summary or untyped)",
            excerpt(word)
        ));
    };
    let j = skip_ws(b, word_end);
    if j < b.len() {
        return Err(format!("unexpected text `{}` after the type of `{name}`", excerpt(&rest[j..])));
    }
    if types.contains_key(name) {
        return Err(format!("second `# TYPE` line for `{name}` (the first is kept)"));
    }
    types.insert(name.to_owned(), (*kind).to_owned());
    Ok(())
}

/// A sample line whose first non-blank character is at `start` (and is not `#`).
fn parse_sample(line: &str, start: usize, types: &BTreeMap<String, String>) -> Result<Sample, String> {
    let b = line.as_bytes();
    let len = b.len();
    let mut i = start;
    if i >= len || !is_name_start(b[i]) {
        return Err(format!("expected metric name, found {}", found(line, i)));
    }
    i += 1;
    while i < len && is_name_char(b[i]) {
        i += 1;
    }
    let name = &line[start..i];

    let mut labels: Vec<(String, String)> = Vec::new();
    let j = skip_ws(b, i);
    if j < len && b[j] == b'{' {
        i = parse_labels(line, j + 1, &mut labels)?;
    } else if j == i && j < len {
        return Err(format!("expected whitespace or `{{` after metric name `{name}`, found {}", found(line, j)));
    } else {
        i = j;
    }

    i = skip_ws(b, i);
    if i >= len {
        return Err(format!("expected a sample value for `{name}`"));
    }
    let v_end = token_end(b, i);
    let token = &line[i..v_end];
    let value = match parse_go_float(token) {
        Ok(v) => v,
        Err(BadFloat::Invalid) => return Err(format!("invalid value `{}` (expected a float, NaN or ±Inf)", excerpt(token))),
        Err(BadFloat::OutOfRange) => return Err(format!("value `{}` is out of range", excerpt(token))),
    };

    i = skip_ws(b, v_end);
    let mut timestamp = None;
    if i < len {
        let t_end = token_end(b, i);
        let token = &line[i..t_end];
        match token.parse::<i64>() {
            Ok(t) => timestamp = Some(t),
            Err(_) => return Err(format!("invalid timestamp `{}` (expected integer milliseconds)", excerpt(token))),
        }
        i = skip_ws(b, t_end);
        if i < len {
            return Err(format!("unexpected text `{}` after the timestamp", excerpt(&line[i..])));
        }
    }

    if let Some(dup) = first_duplicate(&labels) {
        return Err(format!("duplicate label name `{dup}`"));
    }
    if name.ends_with("_bucket") && !types.contains_key(name) {
        match labels.iter().find(|(k, _)| k == "le") {
            None => return Err(format!("histogram bucket `{name}` has no `le` label")),
            Some((_, le)) if parse_go_float(le).is_err() => {
                return Err(format!("invalid `le` value `{}` in histogram bucket `{name}` (expected a float or +Inf)", excerpt(le)));
            }
            Some(_) => {}
        }
    }
    Ok(Sample { id: SeriesId::new(name, labels), value, timestamp })
}

/// The label set from just after its `{`; returns the index just after its `}`.
fn parse_labels(line: &str, mut i: usize, labels: &mut Vec<(String, String)>) -> Result<usize, String> {
    let b = line.as_bytes();
    let len = b.len();
    loop {
        i = skip_ws(b, i);
        if i >= len || !(b[i] == b'}' || is_label_start(b[i])) {
            return Err(format!("expected label name or `}}`, found {}", found(line, i)));
        }
        if b[i] == b'}' {
            return Ok(i + 1);
        }
        let name_start = i;
        i += 1;
        while i < len && is_label_char(b[i]) {
            i += 1;
        }
        let name = &line[name_start..i];
        i = skip_ws(b, i);
        if i >= len || b[i] != b'=' {
            return Err(format!("expected `=` after label name `{}`", excerpt(name)));
        }
        i = skip_ws(b, i + 1);
        if i >= len || b[i] != b'"' {
            return Err(format!("expected `\"` to open the value of label `{}`", excerpt(name)));
        }
        let (value, after) = read_label_value(line, i + 1)?;
        if name == "__name__" {
            return Err("label name `__name__` is reserved".to_owned());
        }
        labels.push((name.to_owned(), value));
        i = skip_ws(b, after);
        if i >= len || (b[i] != b',' && b[i] != b'}') {
            return Err(format!("expected `,` or `}}` after the value of label `{}`, found {}", excerpt(name), found(line, i)));
        }
        if b[i] == b'}' {
            return Ok(i + 1);
        }
        i += 1;
    }
}

/// A quoted label value from just after its opening `"`: the decoded value and the index
/// just after the closing `"`. Copies runs between escapes as slices.
fn read_label_value(line: &str, start: usize) -> Result<(String, usize), String> {
    let b = line.as_bytes();
    let mut out = String::new();
    // `chunk` and every index sliced at sit on ASCII bytes, so on char boundaries.
    let mut chunk = start;
    let mut i = start;
    loop {
        let Some(off) = b.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) else {
            return Err("unterminated label value".to_owned());
        };
        let p = i + off;
        if b[p] == b'"' {
            out.push_str(&line[chunk..p]);
            return Ok((out, p + 1));
        }
        let decoded = match b.get(p + 1).copied() {
            None => return Err("unterminated label value".to_owned()),
            Some(b'\\') => Some('\\'),
            Some(b'"') => Some('"'),
            Some(b'n') => Some('\n'),
            // An unknown escape stays as written: the backslash and the character.
            Some(_) => None,
        };
        if let Some(c) = decoded {
            out.push_str(&line[chunk..p]);
            out.push(c);
            chunk = p + 2;
        }
        // Skipping the byte after the backslash may land inside a multi-byte character;
        // that is fine, since only ASCII bytes are searched for and sliced at.
        i = p + 2;
    }
}

/// The first label name repeated on a line, in line order.
fn first_duplicate(labels: &[(String, String)]) -> Option<&str> {
    if labels.len() <= 16 {
        for (i, (k, _)) in labels.iter().enumerate() {
            if labels[..i].iter().any(|(k2, _)| k2 == k) {
                return Some(k.as_str());
            }
        }
        None
    } else {
        let mut seen = std::collections::HashSet::with_capacity(labels.len());
        labels.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
    }
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// The end of the token starting at `i`: the next space, tab or end of line.
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_ws(b[i]) {
        i += 1;
    }
    i
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_name_start(b[0]) && b[1..].iter().all(|&c| is_name_char(c))
}

/// What is at `i`, for a message: the character in backquotes, or `end of line`.
fn found(line: &str, i: usize) -> String {
    match line.get(i..).and_then(|s| s.chars().next()) {
        None => "end of line".to_owned(),
        Some(c) => format!("`{}`", c.escape_debug()),
    }
}

/// At most [`EXCERPT`] characters of `s`, control characters escaped, `…` if cut.
fn excerpt(s: &str) -> String {
    excerpt_n(s, EXCERPT)
}

fn excerpt_n(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    for c in chars.by_ref().take(max) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// Why a value is not a float.
#[derive(Debug, PartialEq)]
enum BadFloat {
    Invalid,
    /// Well formed but beyond ±f64::MAX (Go's `ErrRange`).
    OutOfRange,
}

/// A float as Go's `strconv.ParseFloat(s, 64)` reads a decimal: optional sign, digits with
/// an optional point and exponent, or `Inf`/`Infinity` (optionally signed) or `NaN` (not
/// signed), case-insensitively. Hexadecimal floats are not supported.
fn parse_go_float(s: &str) -> Result<f64, BadFloat> {
    let (signed, negative, rest) = match s.as_bytes().first().copied() {
        Some(b'+') => (true, false, &s[1..]),
        Some(b'-') => (true, true, &s[1..]),
        _ => (false, false, s),
    };
    if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        return Ok(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if rest.eq_ignore_ascii_case("nan") {
        return if signed { Err(BadFloat::Invalid) } else { Ok(f64::NAN) };
    }
    if !matches!(rest.as_bytes().first().copied(), Some(b'0'..=b'9' | b'.')) {
        return Err(BadFloat::Invalid);
    }
    if !rest.bytes().all(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')) {
        return Err(BadFloat::Invalid);
    }
    let v: f64 = s.parse().map_err(|_| BadFloat::Invalid)?;
    if v.is_infinite() {
        Err(BadFloat::OutOfRange)
    } else {
        Ok(v)
    }
}

// ============================================================================
// query_range JSON
// ============================================================================

/// Why a query_range response could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    /// Prometheus answered `status: "error"`; `error_type` (e.g. `bad_data`, `timeout`) and
    /// `error` are its `errorType` and `error` (empty when absent).
    #[error("prometheus error ({error_type}): {error}")]
    Prometheus { error_type: String, error: String },
    /// The body is not the JSON Prometheus sends: not JSON, an unknown `status`, a missing
    /// `data`, an unsupported `resultType` or a result of the wrong shape. The message says
    /// what was wrong (cut to a few hundred characters).
    #[error("malformed query_range response: {0}")]
    Malformed(String),
}

/// Parses the JSON body of a Prometheus `GET /api/v1/query_range` (or `/api/v1/query`)
/// response:
/// `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"x"},"values":[[1435781430.781,"1"],...]}]}}`.
///
/// - `resultType` `matrix` (`"values": [[ts, "v"], ...]` per series), `vector`
///   (`"value": [ts, "v"]` per series) and `scalar` (`"result": [ts, "v"]`, one series
///   named `default_name` without labels) are accepted; `string` and others are
///   [`QueryError::Malformed`].
/// - Each series is named by its `__name__` label (removed from the labels), or
///   `default_name` when it has none. Series come out in response order, one column each,
///   even when no value of theirs could be used; a column's samples are sorted by time.
/// - Timestamps are float seconds, converted to milliseconds rounded to the nearest.
/// - Values are strings as Prometheus sends them (`"1"`, `"NaN"`, `"+Inf"`, `"-Inf"`);
///   numbers are accepted too. A sample whose value does not parse (or is `null`), or
///   whose timestamp does not fit in milliseconds, is skipped and counted; so is every
///   native-histogram sample (`histograms`/`histogram`), which has no float value.
/// - `warnings`, `infos` and other unknown fields are ignored.
///
/// Returns the columns and the number of samples skipped. `status: "error"` gives
/// [`QueryError::Prometheus`]; anything that is not this JSON gives
/// [`QueryError::Malformed`]. Never panics; nesting deeper than serde_json's limit (128) is
/// malformed.
pub fn parse_query_range(body: &[u8], default_name: &str) -> Result<(Vec<SeriesColumn>, usize), QueryError> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    match env.status.as_str() {
        "success" => {}
        "error" => {
            return Err(QueryError::Prometheus { error_type: env.error_type.unwrap_or_default(), error: env.error.unwrap_or_default() });
        }
        other => return Err(malformed(format!("unknown status `{}` (expected `success` or `error`)", excerpt(other)))),
    }
    let Some(data) = env.data else {
        return Err(malformed("missing `data`".to_owned()));
    };
    let mut skipped = 0usize;
    let mut columns = Vec::new();
    match data.result_type.as_str() {
        "matrix" | "vector" => {
            for elem in data.result {
                let Elem::Series(s) = elem else {
                    return Err(malformed(format!("expected series objects in a `{}` result", data.result_type)));
                };
                let mut metric = s.metric;
                let name = metric.remove("__name__").unwrap_or_else(|| default_name.to_owned());
                let mut col = SeriesColumn::new(SeriesId::new(name, metric));
                for p in s.values.iter().chain(s.value.iter()) {
                    push_point(&mut col, p.ts, p.value, &mut skipped);
                }
                skipped += s.histograms.map_or(0, |h| h.0) + usize::from(s.histogram.is_some());
                sort_by_time(&mut col);
                columns.push(col);
            }
        }
        "scalar" => {
            let value = match data.result.as_slice() {
                [Elem::Num(ts), Elem::Str(v)] => (*ts, parse_go_float(v).ok()),
                [Elem::Num(ts), Elem::Num(v)] => (*ts, Some(*v)),
                _ => return Err(malformed("expected `[timestamp, \"value\"]` as a scalar result".to_owned())),
            };
            let mut col = SeriesColumn::new(SeriesId::named(default_name));
            push_point(&mut col, value.0, value.1, &mut skipped);
            columns.push(col);
        }
        other => {
            return Err(malformed(format!("unsupported resultType `{}` (expected matrix, vector or scalar)", excerpt(other))));
        }
    }
    Ok((columns, skipped))
}

fn malformed(message: String) -> QueryError {
    QueryError::Malformed(excerpt_n(&message, 300))
}

/// Appends one sample, or counts it as skipped when its value or timestamp is unusable.
fn push_point(col: &mut SeriesColumn, secs: f64, value: Option<f64>, skipped: &mut usize) {
    match (secs_to_millis(secs), value) {
        (Some(ts), Some(v)) => col.push(ts, v),
        _ => *skipped += 1,
    }
}

/// Float seconds → milliseconds, rounded to the nearest; `None` outside the i64 range.
fn secs_to_millis(secs: f64) -> Option<Timestamp> {
    let ms = (secs * 1000.0).round();
    // -2^63 is an i64; 2^63 is not.
    let limit = -(i64::MIN as f64);
    if ms.is_finite() && (-limit..limit).contains(&ms) {
        Some(ms as Timestamp)
    } else {
        None
    }
}

/// Sorts a column by timestamp (stable) if it is not sorted already.
fn sort_by_time(col: &mut SeriesColumn) {
    if col.ts.windows(2).all(|w| w[0] <= w[1]) {
        return;
    }
    let mut pairs: Vec<(Timestamp, f64)> = col.ts.iter().copied().zip(col.values.iter().copied()).collect();
    pairs.sort_by_key(|p| p.0);
    col.ts = pairs.iter().map(|p| p.0).collect();
    col.values = pairs.iter().map(|p| p.1).collect();
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<DataRaw>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct DataRaw {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<Elem>,
}

/// One element of `result`: a series object (matrix, vector) or half of a scalar's
/// `[ts, "v"]`. Classified by its JSON type, so `resultType` may come after `result`.
enum Elem {
    Series(SeriesRaw),
    Num(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for Elem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Elem, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a series object, or a timestamp and a value")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Elem, E> {
                Ok(Elem::Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Elem, E> {
                Ok(Elem::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Elem, E> {
                Ok(Elem::Num(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Elem, E> {
                Ok(Elem::Str(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Elem, A::Error> {
                SeriesRaw::deserialize(de::value::MapAccessDeserializer::new(map)).map(Elem::Series)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct SeriesRaw {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Point>,
    #[serde(default)]
    value: Option<Point>,
    #[serde(default)]
    histograms: Option<SeqCount>,
    #[serde(default)]
    histogram: Option<IgnoredAny>,
}

/// `[ts, "v"]`; `value` is `None` when it does not parse.
struct Point {
    ts: f64,
    value: Option<f64>,
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Point, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Point;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sample `[timestamp, \"value\"]`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Point, A::Error> {
                let ts: f64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let value: PointValue = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Point { ts, value: value.0 })
            }
        }
        d.deserialize_seq(V)
    }
}

/// A sample value: a string parsed as a Go float, or a number; `None` if unusable.
struct PointValue(Option<f64>);

impl<'de> Deserialize<'de> for PointValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PointValue, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PointValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sample value string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PointValue, E> {
                Ok(PointValue(parse_go_float(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PointValue, E> {
                Ok(PointValue(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PointValue, E> {
                Ok(PointValue(Some(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PointValue, E> {
                Ok(PointValue(Some(v as f64)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<PointValue, E> {
                Ok(PointValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<PointValue, E> {
                Ok(PointValue(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<PointValue, E> {
                Ok(PointValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The length of a JSON array whose elements are ignored.
struct SeqCount(usize);

impl<'de> Deserialize<'de> for SeqCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SeqCount, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SeqCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SeqCount, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(SeqCount(n))
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::escape_label;
    use proptest::prelude::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn id(name: &str, pairs: &[(&str, &str)]) -> SeriesId {
        SeriesId::new(name, l(pairs))
    }

    fn clean(text: &str) -> Exposition {
        let e = parse_exposition(text);
        assert!(e.issues.is_empty(), "unexpected issues: {:?}", e.issues);
        e
    }

    fn one(line: &str) -> Sample {
        let mut e = clean(line);
        assert_eq!(e.samples.len(), 1, "{line}");
        e.samples.remove(0)
    }

    fn issue(line: &str) -> String {
        let e = parse_exposition(line);
        assert!(e.samples.is_empty(), "{line:?} parsed: {:?}", e.samples);
        assert_eq!(e.issues.len(), 1, "{line:?}: {:?}", e.issues);
        e.issues[0].message.clone()
    }

    #[test]
    fn node_exporter_excerpt() {
        let text = r##"# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 2.19001928e+06
node_cpu_seconds_total{cpu="0",mode="iowait"} 1027.55
node_cpu_seconds_total{cpu="1",mode="idle"} 2.19e+06
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 3.4355580928e+10
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.21
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="web-1",release="6.1.0-18-amd64",sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"} 1
# A plain comment
#no space either

node_scrape_collector_success{collector="cpu"} 1
"##;
        let e = clean(text);
        assert_eq!(e.samples.len(), 8);
        assert_eq!(e.samples[0], Sample { id: SeriesId::named("go_goroutines"), value: 8.0, timestamp: None });
        assert_eq!(e.samples[1].id, id("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")]));
        assert_eq!(e.samples[1].value, 2190019.28);
        assert_eq!(e.samples[2].value, 1027.55);
        assert_eq!(e.samples[4].id.label("mountpoint"), Some("/"));
        assert_eq!(e.samples[4].value, 3.4355580928e10);
        assert_eq!(e.samples[5].id.name(), "node_load1");
        assert_eq!(e.samples[6].id.label("version"), Some("#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"));
        assert_eq!(e.samples[7].id, id("node_scrape_collector_success", &[("collector", "cpu")]));
        let types: Vec<(&str, &str)> = e.types.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            types,
            [
                ("go_goroutines", "gauge"),
                ("node_cpu_seconds_total", "counter"),
                ("node_filesystem_avail_bytes", "gauge"),
                ("node_load1", "gauge"),
                ("node_uname_info", "gauge")
            ]
        );
    }

    #[test]
    fn histogram_lines_are_ordinary_series() {
        let text = r#"# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
"#;
        let e = clean(text);
        assert_eq!(e.types["http_request_duration_seconds"], "histogram");
        assert_eq!(e.samples.len(), 8);
        let les: Vec<&str> = e.samples[..6].iter().map(|s| s.id.label("le").unwrap()).collect();
        assert_eq!(les, ["0.05", "0.1", "0.2", "0.5", "1", "+Inf"]);
        assert!(e.samples[..6].iter().all(|s| s.id.name() == "http_request_duration_seconds_bucket"));
        assert_eq!(e.samples[5].value, 144320.0);
        assert_eq!(e.samples[6], Sample { id: SeriesId::named("http_request_duration_seconds_sum"), value: 53423.0, timestamp: None });
        assert_eq!(e.samples[7].id.name(), "http_request_duration_seconds_count");
        assert_eq!(e.samples[7].value, 144320.0);
    }

    #[test]
    fn bucket_lines_need_a_numeric_le() {
        let text = "# TYPE h histogram\nh_bucket{path=\"/\"} 3\nh_bucket{le=\"abc\"} 3\nh_bucket{le=\"0.5\"} 3\n";
        let e = parse_exposition(text);
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.issues.len(), 2);
        assert_eq!(e.issues[0], ParseIssue { line: 2, message: "histogram bucket `h_bucket` has no `le` label".into() });
        assert_eq!(e.issues[1].line, 3);
        assert!(e.issues[1].message.starts_with("invalid `le` value `abc`"), "{}", e.issues[1].message);
        // Without any TYPE line the check still applies...
        assert!(issue("x_bucket 1").contains("has no `le` label"));
        // ...but a `_bucket` series declared as a family of its own is not a histogram bucket.
        let e = clean("# TYPE s3_bucket gauge\ns3_bucket{name=\"logs\"} 12\n");
        assert_eq!(e.samples[0].value, 12.0);
    }

    #[test]
    fn summary_with_quantiles() {
        let text = r#"# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#;
        let e = clean(text);
        assert_eq!(e.types["rpc_duration_seconds"], "summary");
        assert_eq!(e.samples.len(), 7);
        assert_eq!(e.samples[2].id, id("rpc_duration_seconds", &[("quantile", "0.5")]));
        assert_eq!(e.samples[2].value, 4773.0);
        assert_eq!(e.samples[5].value, 17560473.0);
        assert_eq!(e.samples[6].value, 2693.0);
    }

    #[test]
    fn special_and_decimal_values() {
        assert!(one("m NaN").value.is_nan());
        assert!(one("m nan").value.is_nan());
        assert_eq!(one("m +Inf").value, f64::INFINITY);
        assert_eq!(one("m -Inf").value, f64::NEG_INFINITY);
        assert_eq!(one("m Inf").value, f64::INFINITY);
        assert_eq!(one("m +inf").value, f64::INFINITY);
        assert_eq!(one("m -INF").value, f64::NEG_INFINITY);
        assert_eq!(one("m Infinity").value, f64::INFINITY);
        assert_eq!(one("m 1e3").value, 1000.0);
        assert_eq!(one("m -1.5E-3").value, -0.0015);
        assert_eq!(one("m .5").value, 0.5);
        assert_eq!(one("m 5.").value, 5.0);
        assert_eq!(one("m +7").value, 7.0);
        assert_eq!(one("m -0").value, 0.0);
        assert_eq!(one("m 1e-400").value, 0.0);
        assert_eq!(issue("m abc"), "invalid value `abc` (expected a float, NaN or ±Inf)");
        assert!(issue("m -NaN").starts_with("invalid value `-NaN`"));
        assert!(issue("m 1_000").starts_with("invalid value"));
        assert!(issue("m 0x1p3").starts_with("invalid value"));
        assert!(issue("m 1.2.3").starts_with("invalid value"));
        assert!(issue("m e5").starts_with("invalid value"));
        assert!(issue("m +").starts_with("invalid value"));
        assert_eq!(issue("m 1e999"), "value `1e999` is out of range");
    }

    #[test]
    fn timestamps() {
        assert_eq!(one("m 1 1395066363000").timestamp, Some(1_395_066_363_000));
        assert_eq!(one("m{a=\"b\"} 2 -1000").timestamp, Some(-1000));
        assert_eq!(one("m 1 0 ").timestamp, Some(0));
        assert_eq!(one("m 1").timestamp, None);
        assert_eq!(one("m 1\t\t17").timestamp, Some(17));
        assert_eq!(issue("m 1 12.5"), "invalid timestamp `12.5` (expected integer milliseconds)");
        assert!(issue("m 1 99999999999999999999").starts_with("invalid timestamp"));
        assert_eq!(issue("m 1 2 3"), "unexpected text `3` after the timestamp");
    }

    #[test]
    fn escaped_label_values() {
        let s = one(r#"m{a="a\"b",c="c\\d",e="e\nf"} 1"#);
        assert_eq!(s.id, id("m", &[("a", "a\"b"), ("c", "c\\d"), ("e", "e\nf")]));
        // An unknown escape keeps the backslash and the character.
        let s = one(r#"m{t="x\ty",u="\é",v="end\\"} 1"#);
        assert_eq!(s.id.label("t"), Some("x\\ty"));
        assert_eq!(s.id.label("u"), Some("\\é"));
        assert_eq!(s.id.label("v"), Some("end\\"));
        // Braces, commas, `#` and `=` inside values are just text.
        let s = one(r#"m{q="{a=1, b=}#"} 1"#);
        assert_eq!(s.id.label("q"), Some("{a=1, b=}#"));
        let s = one("m{empty=\"\"} 1");
        assert_eq!(s.id.label("empty"), Some(""));
        // What escape_label writes comes back.
        let v = "x\\\"\n\ty";
        let s = one(&format!("m{{k=\"{}\"}} 1", escape_label(v)));
        assert_eq!(s.id.label("k"), Some(v));
    }

    #[test]
    fn empty_label_sets_trailing_commas_and_whitespace() {
        assert_eq!(one("m{} 1").id, SeriesId::named("m"));
        assert_eq!(one("m { } 1").id, SeriesId::named("m"));
        assert_eq!(one("m{a=\"1\",} 1").id, id("m", &[("a", "1")]));
        let s = one(" \t m { a = \"1\" , b\t=\t\"2\" , } \t 3 \t 42 \t");
        assert_eq!(s, Sample { id: id("m", &[("a", "1"), ("b", "2")]), value: 3.0, timestamp: Some(42) });
        assert_eq!(one("m{a=\"1\"}4").value, 4.0);
        assert_eq!(one("ns:metric_name:rate5m 4").id.name(), "ns:metric_name:rate5m");
        assert_eq!(one("_m{_l=\"1\"} 4").id.label("_l"), Some("1"));
    }

    #[test]
    fn crlf_line_endings() {
        let e = clean("# HELP a x\r\n# TYPE a counter\r\na{b=\"c\"} 1 5\r\n\r\nd 2\r\n");
        assert_eq!(e.types["a"], "counter");
        assert_eq!(
            e.samples,
            vec![
                Sample { id: id("a", &[("b", "c")]), value: 1.0, timestamp: Some(5) },
                Sample { id: SeriesId::named("d"), value: 2.0, timestamp: None },
            ]
        );
        let e = parse_exposition("good 1\r\nbad{\r\ngood 2\r\n");
        assert_eq!(e.samples.len(), 2);
        assert_eq!(e.issues[0].line, 2);
    }

    #[test]
    fn malformed_lines_are_reported_and_skipped() {
        let cases: &[(&str, &str)] = &[
            ("job{", "expected label name or `}`, found end of line"),
            ("up{job \"x\"} 1", "expected `=` after label name `job`"),
            ("up{job=x} 1", "expected `\"` to open the value of label `job`"),
            ("up{job=\"x} 1", "unterminated label value"),
            ("up{job=\"x\\", "unterminated label value"),
            ("up{job=\"x\" instance=\"y\"} 1", "expected `,` or `}` after the value of label `job`, found `i`"),
            ("up{job=\"x\"", "expected `,` or `}` after the value of label `job`, found end of line"),
            ("up abc", "invalid value `abc` (expected a float, NaN or ±Inf)"),
            ("up", "expected a sample value for `up`"),
            ("up{job=\"x\"}  ", "expected a sample value for `up`"),
            ("up 1 12.5", "invalid timestamp `12.5` (expected integer milliseconds)"),
            ("up 1 2 3", "unexpected text `3` after the timestamp"),
            ("9up 1", "expected metric name, found `9`"),
            ("{job=\"x\"} 1", "expected metric name, found `{`"),
            ("up-time 1", "expected whitespace or `{` after metric name `up`, found `-`"),
            ("up{1a=\"x\"} 1", "expected label name or `}`, found `1`"),
            ("up{,} 1", "expected label name or `}`, found `,`"),
            ("up{a=\"1\",,} 1", "expected label name or `}`, found `,`"),
            ("up{a:b=\"1\"} 1", "expected `=` after label name `a`"),
            ("up{a=\"1\",b=\"2\",a=\"3\"} 1", "duplicate label name `a`"),
            ("up{__name__=\"x\"} 1", "label name `__name__` is reserved"),
            ("up -nan", "invalid value `-nan` (expected a float, NaN or ±Inf)"),
            ("up 1e999", "value `1e999` is out of range"),
            ("x_bucket{a=\"b\"} 1", "histogram bucket `x_bucket` has no `le` label"),
            ("# TYPE", "expected a metric name after `# TYPE`"),
            ("# HELP  ", "expected a metric name after `# HELP`"),
            ("# TYPE foo", "expected a metric type after `# TYPE foo` (counter, gauge, histogram, summary or untyped)"),
            ("# TYPE foo bar", "unknown metric type `bar` for `foo` (expected counter, gauge, histogram, summary or untyped)"),
            ("# TYPE foo gauge extra", "unexpected text `extra` after the type of `foo`"),
            ("# HELP 1foo some help", "invalid metric name `1foo` in `# HELP` (expected [a-zA-Z_:][a-zA-Z0-9_:]*)"),
            ("# TYPE foo{a=\"b\"} gauge", "invalid metric name `foo{a=\"b\"}` in `# TYPE` (expected [a-zA-Z_:][a-zA-Z0-9_:]*)"),
            ("up\0 1", "expected whitespace or `{` after metric name `up`, found `\\0`"),
        ];
        let mut text = String::new();
        for (k, (bad, _)) in cases.iter().enumerate() {
            text.push_str(bad);
            text.push('\n');
            text.push_str(&format!("good_{k}{{k=\"{k}\"}} {k}\n"));
        }
        let e = parse_exposition(&text);
        let issues: Vec<(usize, &str)> = e.issues.iter().map(|i| (i.line, i.message.as_str())).collect();
        let expected: Vec<(usize, &str)> = cases.iter().enumerate().map(|(k, (_, m))| (2 * k + 1, *m)).collect();
        assert_eq!(issues, expected);
        assert_eq!(e.samples.len(), cases.len());
        for (k, s) in e.samples.iter().enumerate() {
            assert_eq!(s.id, id(&format!("good_{k}"), &[("k", k.to_string().as_str())]));
            assert_eq!(s.value, k as f64);
        }
        assert!(e.types.is_empty());
    }

    #[test]
    fn type_and_help_lines() {
        let text = "# HELP a Help with \\\\ backslash and \\n newline and \"quotes\".\n# TYPE a Counter\n#\tTYPE b   gauge  \n# TYPE a gauge\n# type c gauge\n# TYPEX d gauge\n# HELP e\na 1\n";
        let e = parse_exposition(text);
        assert_eq!(e.types.get("a").map(String::as_str), Some("counter"));
        assert_eq!(e.types.get("b").map(String::as_str), Some("gauge"));
        assert_eq!(e.types.len(), 2, "lowercase `type` and `TYPEX` lines are comments");
        assert_eq!(e.issues, vec![ParseIssue { line: 4, message: "second `# TYPE` line for `a` (the first is kept)".into() }]);
        assert_eq!(e.samples.len(), 1);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        // NUL bytes and lossily decoded invalid UTF-8.
        let bytes = b"m{a=\"\xff\xfe\"} 1\n\0\0\0\nm\xc3 1\nm{\xe2\x82=\"1\"} 1\n\xf0\x9f\x98 2\n";
        let text = String::from_utf8_lossy(bytes);
        let e = parse_exposition(&text);
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.samples[0].id.label("a"), Some("\u{fffd}\u{fffd}"));
        assert_eq!(e.issues.iter().map(|i| i.line).collect::<Vec<_>>(), [2, 3, 4, 5]);

        // 10 MB lines: one huge label value, one unterminated, one huge value, many escapes,
        // many labels (with a duplicate at the end).
        let big = "x".repeat(10 << 20);
        let e = parse_exposition(&format!("m{{a=\"{big}\"}} 1\nm{{a=\"{big}\nm {big}\nm 1 {big}\n"));
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.samples[0].id.label("a").map(str::len), Some(big.len()));
        assert_eq!(e.issues.iter().map(|i| i.line).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(e.issues.iter().all(|i| i.message.len() < 200), "messages quote short excerpts");

        let escapes = "\\t\\n\\\"".repeat(1 << 20);
        let s = one(&format!("m{{a=\"{escapes}\"}} 1"));
        assert_eq!(s.id.label("a").map(str::len), Some(4 << 20));

        let mut labels: String = (0..200_000).map(|i| format!("l{i}=\"v\",")).collect();
        let e = clean(&format!("m{{{labels}}} 1"));
        assert_eq!(e.samples[0].id.labels().len(), 200_000);
        labels.push_str("l7=\"again\"");
        assert_eq!(issue(&format!("m{{{labels}}} 1")), "duplicate label name `l7`");

        let digits = "9".repeat(10 << 20);
        assert_eq!(one(&format!("m 0.{digits}")).value, 1.0);
        assert!(issue(&format!("m {digits}")).contains("out of range"));
        assert!(parse_exposition(&"{".repeat(10 << 20)).issues.len() == 1);
        assert!(parse_exposition(&"\n".repeat(1 << 20)).samples.is_empty());
    }

    // ---------------------------------------------------------------- query_range

    fn qr(body: &str) -> (Vec<SeriesColumn>, usize) {
        parse_query_range(body.as_bytes(), "q").unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    fn is_malformed(body: &str) -> String {
        match parse_query_range(body.as_bytes(), "q") {
            Err(QueryError::Malformed(m)) => m,
            other => panic!("expected Malformed for {body}, got {other:?}"),
        }
    }

    #[test]
    fn query_range_matrix() {
        let body = r#"{
          "status": "success",
          "data": {
            "resultType": "matrix",
            "result": [
              {"metric": {"__name__": "up", "job": "prometheus", "instance": "localhost:9090"},
               "values": [[1435781430.781, "1"], [1435781445.781, "0"], [1435781460.781, "1"]]},
              {"metric": {"__name__": "up", "job": "node", "instance": "localhost:9091"},
               "values": [[1435781430.781, "NaN"], [1435781445.781, "+Inf"], [1435781460.781, "-Inf"], [1435781475, "1e3"]]},
              {"metric": {"job": "node"},
               "values": [[1435781430.781, "oops"], [1435781445.7816, "2.5"], [1435781460, null]]}
            ]
          },
          "warnings": ["this is only a warning"]
        }"#;
        let (cols, skipped) = qr(body);
        assert_eq!(skipped, 2);
        assert_eq!(cols.len(), 3);
        assert_eq!(cols[0].id, id("up", &[("instance", "localhost:9090"), ("job", "prometheus")]));
        assert_eq!(cols[0].ts, [1435781430781, 1435781445781, 1435781460781]);
        assert_eq!(cols[0].values, [1.0, 0.0, 1.0]);
        assert_eq!(cols[1].id.label("job"), Some("node"));
        assert_eq!(cols[1].ts[3], 1435781475000);
        assert!(cols[1].values[0].is_nan());
        assert_eq!(&cols[1].values[1..], [f64::INFINITY, f64::NEG_INFINITY, 1000.0]);
        // No `__name__`: the default name, the other labels kept.
        assert_eq!(cols[2].id, id("q", &[("job", "node")]));
        assert_eq!(cols[2].ts, [1435781445782]);
        assert_eq!(cols[2].values, [2.5]);
    }

    #[test]
    fn query_range_odd_but_valid_shapes() {
        // resultType after result, empty result, unsorted samples, numeric values,
        // native histograms (counted as skipped), an unusable timestamp.
        let body = r#"{"data":{"result":[
            {"metric":{"__name__":"a"},"values":[[20,"2"],[10,1],[15,"1.5"]]},
            {"metric":{"__name__":"h"},"histograms":[[1,{"count":"2"}],[2,{"count":"3"}]]},
            {"values":[[1e300,"1"]]}
          ],"resultType":"matrix"},"status":"success","infos":["x"]}"#;
        let (cols, skipped) = qr(body);
        assert_eq!(skipped, 3);
        assert_eq!(cols[0].ts, [10_000, 15_000, 20_000]);
        assert_eq!(cols[0].values, [1.0, 1.5, 2.0]);
        assert_eq!(cols[1].id, SeriesId::named("h"));
        assert!(cols[1].is_empty());
        assert_eq!(cols[2].id, SeriesId::named("q"));
        assert!(cols[2].is_empty());
        let (cols, skipped) = qr(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#);
        assert!(cols.is_empty());
        assert_eq!(skipped, 0);
        let (cols, _) = qr(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[-1.5,"3"]]}]}}"#);
        assert_eq!(cols[0].ts, [-1500]);
    }

    #[test]
    fn query_vector_and_scalar() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"a"},"value":[1435781451.781,"1"]},
            {"metric":{"job":"b"},"value":[1435781451.781,"+Inf"]},
            {"metric":{"job":"c"},"value":[1435781451.781,"x"]}]}}"#;
        let (cols, skipped) = parse_query_range(body.as_bytes(), "sum_up").unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(cols.len(), 3);
        assert_eq!(cols[0].id, id("up", &[("job", "a")]));
        assert_eq!((cols[0].ts.as_slice(), cols[0].values.as_slice()), (&[1435781451781][..], &[1.0][..]));
        assert_eq!(cols[1].id, id("sum_up", &[("job", "b")]));
        assert_eq!(cols[1].values, [f64::INFINITY]);
        assert!(cols[2].is_empty());

        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"42.5"]}}"#;
        let (cols, skipped) = parse_query_range(body.as_bytes(), "answer").unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(
            cols,
            vec![SeriesColumn { id: SeriesId::named("answer"), ts: vec![1435781451781], values: vec![42.5], annotations: None }]
        );
        let (cols, skipped) = qr(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN?"]}}"#);
        assert_eq!(skipped, 1);
        assert!(cols[0].is_empty());
    }

    #[test]
    fn query_errors() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error"}"#;
        let err = parse_query_range(body.as_bytes(), "q").unwrap_err();
        assert_eq!(
            err,
            QueryError::Prometheus { error_type: "bad_data".into(), error: "invalid parameter \"query\": 1:1: parse error".into() }
        );
        assert_eq!(err.to_string(), "prometheus error (bad_data): invalid parameter \"query\": 1:1: parse error");
        assert_eq!(
            parse_query_range(br#"{"status":"error"}"#, "q").unwrap_err(),
            QueryError::Prometheus { error_type: String::new(), error: String::new() }
        );

        assert!(is_malformed("").contains("EOF"));
        is_malformed("not json");
        is_malformed("[]");
        is_malformed(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}"#);
        assert!(is_malformed(r#"{"data":{"resultType":"matrix","result":[]}}"#).contains("status"));
        assert!(is_malformed(r#"{"status":"pending"}"#).contains("unknown status `pending`"));
        assert_eq!(is_malformed(r#"{"status":"success"}"#), "missing `data`");
        assert!(is_malformed(r#"{"status":"success","data":{"result":[]}}"#).contains("resultType"));
        assert!(is_malformed(r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#)
            .contains("unsupported resultType `string`"));
        assert!(is_malformed(r#"{"status":"success","data":{"resultType":"matrix","result":[1,"x"]}}"#).contains("expected series objects"));
        assert!(is_malformed(r#"{"status":"success","data":{"resultType":"scalar","result":[{}]}}"#).contains("scalar"));
        is_malformed(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#);
        is_malformed(r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,"1",2]]}]}}"#);
        is_malformed(r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1]]}]}}"#);
        is_malformed(r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[["1","1"]]}]}}"#);
        is_malformed(r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,["1"]]]}]}}"#);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        is_malformed(&deep);
        let deep = format!(r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"x":{}}}]}}}}"#, "[".repeat(100_000));
        is_malformed(&deep);
        let long = format!(r#"{{"status":"{}"}}"#, "s".repeat(1 << 20));
        assert!(is_malformed(&long).len() < 400);
    }

    // ---------------------------------------------------------------- properties

    fn label_set() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", any::<String>(), 0..5).prop_map(|mut m| {
            m.remove("__name__");
            m
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_strings_never_panic(s in any::<String>(), t in r#"[a-z_{}=",\\ #\n\r\t0-9.+eE:-]{0,200}"#) {
            for text in [&s, &t] {
                let e = parse_exposition(text);
                let lines = text.split('\n').count();
                prop_assert!(e.samples.len() + e.issues.len() <= lines);
                prop_assert!(e.issues.iter().all(|i| i.line >= 1 && i.line <= lines));
                prop_assert!(e.issues.windows(2).all(|w| w[0].line < w[1].line));
                let _ = parse_query_range(text.as_bytes(), "q");
            }
        }

        #[test]
        fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..400), j in r#"[\[\]{}":, 0-9a-z._+-]{0,200}"#) {
            let text = String::from_utf8_lossy(&b);
            let _ = parse_exposition(&text);
            let _ = parse_query_range(&b, "q");
            let _ = parse_query_range(text.as_bytes(), "q");
            let _ = parse_query_range(j.as_bytes(), "q");
            let wrapped = format!(r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":{j}}}]}}}}"#);
            let _ = parse_query_range(wrapped.as_bytes(), "q");
        }

        #[test]
        fn valid_sample_lines_round_trip(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            labels in label_set(),
            value in any::<f64>(),
            debug_format in any::<bool>(),
            braces in any::<bool>(),
            trailing_comma in any::<bool>(),
            ts in prop::option::of(any::<i64>()),
            ws in prop::collection::vec("[ \t]{0,2}", 8),
            crlf in any::<bool>(),
        ) {
            let name = if name.ends_with("_bucket") { format!("{name}x") } else { name };
            let mut line = format!("{}{name}", ws[0]);
            if braces || !labels.is_empty() {
                line.push_str(&format!("{}{{", ws[1]));
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(&format!("{}{k}{}={}\"{}\"{}", ws[2], ws[3], ws[4], escape_label(v), ws[5]));
                }
                if trailing_comma && !labels.is_empty() {
                    line.push(',');
                }
                line.push('}');
            }
            let v = if debug_format { format!("{value:?}") } else { format!("{value}") };
            line.push_str(&format!(" {}{v}", ws[6]));
            if let Some(ts) = ts {
                line.push_str(&format!(" {ts}"));
            }
            line.push_str(&ws[7]);
            line.push_str(if crlf { "\r\n" } else { "\n" });

            let e = parse_exposition(&format!("# TYPE {name} untyped\n{line}"));
            prop_assert!(e.issues.is_empty(), "{:?} for {:?}", e.issues, line);
            prop_assert_eq!(e.samples.len(), 1);
            let s = &e.samples[0];
            prop_assert_eq!(s.id.name(), name.as_str());
            let got: BTreeMap<String, String> = s.id.labels().iter().cloned().collect();
            prop_assert_eq!(got, labels);
            prop_assert!(s.value == value || (s.value.is_nan() && value.is_nan()), "{} != {}", s.value, value);
            prop_assert_eq!(s.timestamp, ts);
        }
    }
}
