//! The built-in operators: for each, its stage kind, inputs, parameters (name, type,
//! default, doc), output port type, documentation and an example.
//!
//! The checker reads this registry to resolve calls and check arguments; `docs/operators.md`
//! is generated from it (`vigil explain operators`), and a test compiles every example.
//! The implementations live with the engine and come with their issues.

pub mod prom;
pub mod types;

use crate::syntax::ast::StageKind;
pub use types::{Scalar, Ty};

/// A parameter's default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    /// The argument must be given.
    Required,
    /// The argument may be left out; the operator then does without it.
    Optional,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
    /// A duration in milliseconds.
    Dur(u64),
    Strs(&'static [&'static str]),
    Ints(&'static [i64]),
}

/// One input port: positional, connected to another stage.
#[derive(Debug)]
pub struct InputSpec {
    pub name: &'static str,
    /// The port types this input accepts.
    pub types: &'static [Ty],
    pub doc: &'static str,
    /// Takes every positional argument from here on (`correlate(a, b, c)`): one or more
    /// stages. The parameters after it are given by name.
    pub many: bool,
}

/// One parameter: a constant value (or a condition), given by name or position.
#[derive(Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Default,
    /// For strings (and lists of strings): the values accepted; empty means any.
    pub choices: &'static [&'static str],
    /// For numbers and durations (and each item of a list of numbers): the smallest value
    /// accepted.
    pub min: Option<f64>,
    /// Likewise, the largest.
    pub max: Option<f64>,
    pub doc: &'static str,
}

/// What an operator's output is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    Fixed(Ty),
    /// The same port type as the input at this index (`select` passes Series or Events).
    SameAsInput(usize),
}

/// A built-in operator's signature and documentation.
#[derive(Debug)]
pub struct OperatorSpec {
    /// The name it is called by (`prometheus.query_range`).
    pub name: &'static str,
    pub kind: StageKind,
    pub summary: &'static str,
    pub doc: &'static str,
    pub inputs: &'static [InputSpec],
    pub params: &'static [ParamSpec],
    pub output: Output,
    /// A stage statement using it, compiled by a test inside a pipeline that defines
    /// `raw` (Series), `events` (Events), `feats` (Features), `model` (Model) and
    /// `scores` (Scores).
    pub example: &'static str,
}

impl OperatorSpec {
    /// All parameters: the operator's own, then those its stage kind shares.
    pub fn all_params(&self) -> impl Iterator<Item = &'static ParamSpec> + Clone {
        self.params.iter().chain(common_params(self.kind).iter())
    }

    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.all_params().find(|p| p.name == name)
    }
}

const fn p(name: &'static str, ty: Ty, default: Default, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty, default, choices: &[], min: None, max: None, doc }
}

/// The `start_at` parameter of the file sources.
const START_AT_DOC: &str = "Where to start in a file met for the first time (no cursor in the state yet): `beginning` reads what it holds, `end` only lines written from then on (a CSV's header is still read). Unset: `end` under `vigil run` — a first start never pages about the past — and `beginning` under `replay`, `eval` and `test`. A file that does not exist yet is read from its beginning when it appears. Under `vigil run`, what `beginning` reads at the first start is a backlog: respond stages record the incidents it shows but notify only those still open once it is read.";

const fn choice(name: &'static str, choices: &'static [&'static str], default: Default, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty: Ty::String, default, choices, min: None, max: None, doc }
}

const fn min(name: &'static str, ty: Ty, default: Default, min: f64, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty, default, choices: &[], min: Some(min), max: None, doc }
}

const fn range(name: &'static str, ty: Ty, default: Default, min: f64, max: f64, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty, default, choices: &[], min: Some(min), max: Some(max), doc }
}

/// The largest network dimension (window, lookback, horizon, hidden sizes).
const MAX_DIM: f64 = 4096.0;

const fn input(name: &'static str, types: &'static [Ty], doc: &'static str) -> InputSpec {
    InputSpec { name, types, doc, many: false }
}

/// An input that takes one or more stages.
const fn inputs(name: &'static str, types: &'static [Ty], doc: &'static str) -> InputSpec {
    InputSpec { name, types, doc, many: true }
}

use self::Default::*;

const NUMERIC: &[Ty] = &[Ty::Series];
const RESPONDABLE: &[Ty] = &[Ty::Scores];

/// Parameters every stage of a kind takes.
pub fn common_params(kind: StageKind) -> &'static [ParamSpec] {
    static RESPOND: &[ParamSpec] = &[
        p("when", Ty::Condition, Optional, "Acts only on items for which this condition holds, e.g. `scores.anomalous`. Default: anomalous scores, and every incident transition."),
        p("dedup", Ty::String, Str("{{ pipeline }}/{{ stage }}/{{ series }}"), "Template of the incident key: items with the same key update one incident."),
        p("group_by", Ty::List(Scalar::String), Strs(&[]), "Labels whose values group incidents into one notification."),
    ];
    match kind {
        StageKind::Respond => RESPOND,
        _ => &[],
    }
}

/// Every built-in operator.
pub static OPERATORS: &[OperatorSpec] = &[
    // ======================== collect ========================
    OperatorSpec {
        name: "csv",
        kind: StageKind::Collect,
        summary: "Reads samples from a CSV file, remembering how far it has read.",
        doc: "Reads rows `timestamp,value[,...]` appended to a CSV file since the last tick (a cursor kept in the state store). Timestamps are RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or Unix seconds. Malformed rows are logged, counted and skipped.",
        inputs: &[],
        params: &[
            p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
            p("timestamp_column", Ty::String, Str("timestamp"), "The column holding timestamps."),
            p("value_columns", Ty::List(Scalar::String), Strs(&["value"]), "Columns read as series, one series each."),
            p("labels", Ty::Map, Optional, "Labels added to every series read."),
            choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"collect cpu = csv(path: "data/cpu.csv")"#,
    },
    OperatorSpec {
        name: "jsonl",
        kind: StageKind::Collect,
        summary: "Reads samples from a JSON Lines file, remembering how far it has read.",
        doc: "Reads one JSON object per line appended since the last tick. Each object gives a timestamp, a value and optional labels. Lines that are not JSON or lack the fields are logged, counted and skipped.",
        inputs: &[],
        params: &[
            p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
            p("timestamp_field", Ty::String, Str("timestamp"), "The field holding the timestamp."),
            p("value_field", Ty::String, Str("value"), "The field holding the value."),
            p("label_fields", Ty::List(Scalar::String), Strs(&[]), "Fields copied into the series labels."),
            choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"collect errors = jsonl(path: "logs/errors.jsonl", label_fields: ["service"])"#,
    },
    OperatorSpec {
        name: "synthetic",
        kind: StageKind::Collect,
        summary: "Generates a seeded synthetic series with injected incidents.",
        doc: "Generates samples with a daily-like seasonal wave, Gaussian noise and, at intervals, injected incidents (level shifts and spikes). Deterministic for a seed. The demo pipeline's data source; `speedup` compresses time so that incidents happen within seconds.",
        inputs: &[],
        params: &[
            p("seed", Ty::Int, Int(1), "Seed of the random generator."),
            range("series", Ty::Int, Int(1), 1.0, 100_000.0, "How many series to generate."),
            min("interval", Ty::Duration, Dur(1000), 1.0, "Time between samples."),
            p("baseline", Ty::Float, Float(50.0), "Mean level."),
            min("noise", Ty::Float, Float(2.0), 0.0, "Standard deviation of the noise."),
            min("period", Ty::Duration, Dur(3_600_000), 1.0, "Period of the seasonal wave."),
            p("amplitude", Ty::Float, Float(10.0), "Amplitude of the seasonal wave."),
            min("incident_every", Ty::Duration, Dur(600_000), 1.0, "Mean time between injected incidents."),
            min("incident_length", Ty::Duration, Dur(60_000), 1.0, "How long an injected incident lasts."),
            p("incident_size", Ty::Float, Float(8.0), "Size of an incident, in noise standard deviations."),
            min("speedup", Ty::Float, Float(1.0), 0.001, "How much faster than real time samples are produced."),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"collect demo = synthetic(seed: 7, series: 3, speedup: 60.0)"#,
    },
    OperatorSpec {
        name: "prometheus.scrape",
        kind: StageKind::Collect,
        summary: "Scrapes a Prometheus text exposition endpoint.",
        doc: "Fetches `url` in the text exposition format 0.0.4 on each tick and turns every sample into a series (histograms and summaries become their `_bucket`, `_sum` and `_count` series). NaN and ±Inf values are kept; escaped label values are decoded.",
        inputs: &[],
        params: &[
            p("url", Ty::String, Required, "The endpoint, e.g. `http://127.0.0.1:9100/metrics`."),
            p("metrics", Ty::List(Scalar::String), Strs(&[]), "Keep only these metric names (all when empty)."),
            p("labels", Ty::Map, Optional, "Labels added to every series."),
            min("timeout", Ty::Duration, Dur(10_000), 1.0, "Request timeout."),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"collect node = prometheus.scrape(url: "http://127.0.0.1:9100/metrics", metrics: ["node_load1"])"#,
    },
    OperatorSpec {
        name: "prometheus.query_range",
        kind: StageKind::Collect,
        summary: "Runs a PromQL range query against the Prometheus HTTP API.",
        doc: "Calls `GET /api/v1/query_range` with the query, from the cursor (or `lookback` ago on the first tick) to now, at `step` resolution. Each result series becomes a series; values arrive as strings and are parsed.",
        inputs: &[],
        params: &[
            p("url", Ty::String, Required, "The Prometheus server, e.g. `http://127.0.0.1:9090`."),
            p("query", Ty::String, Required, "The PromQL expression."),
            min("step", Ty::Duration, Dur(30_000), 1.0, "Query resolution."),
            min("lookback", Ty::Duration, Dur(3_600_000), 1.0, "How far back the first query reaches."),
            min("timeout", Ty::Duration, Dur(10_000), 1.0, "Request timeout."),
            p("bearer_token", Ty::Secret, Optional, "A token sent as `Authorization: Bearer`."),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"collect lat = prometheus.query_range(url: "http://127.0.0.1:9090", query: "up", step: 15s)"#,
    },
    OperatorSpec {
        name: "webhook_events",
        kind: StageKind::Collect,
        summary: "Receives the requests posted to the pipeline's `on webhook` trigger as Events.",
        doc: "Each request to the pipeline's webhook path becomes events: an Alertmanager webhook (payload version 4) gives one event per alert with its labels, annotations and status; a generic JSON object or array gives one event per object. Bodies over `max_body` bytes are refused with 413, content types other than JSON with 415, requests beyond `rate_limit` per second with 429. With `token` or `hmac` (secrets), unauthenticated requests get 401; without them the path is open to whoever can reach the listener (loopback by default).",
        inputs: &[],
        params: &[
            choice("format", &["json", "alertmanager"], Str("json"), "How to read request bodies."),
            min("max_body", Ty::Int, Int(1_048_576), 1.0, "The largest body accepted, in bytes."),
            p("token", Ty::Secret, Optional, "Requests must carry `Authorization: Bearer <token>` (401 otherwise)."),
            p("hmac", Ty::Secret, Optional, "Requests must carry the body's HMAC-SHA256 (hex, `sha256=` prefix optional) in `signature_header` (401 otherwise)."),
            p("signature_header", Ty::String, Str("X-Signature"), "The header holding the HMAC signature."),
            min("rate_limit", Ty::Int, Int(100), 1.0, "Requests per second accepted on the path (bursts up to as many); more get 429."),
        ],
        output: Output::Fixed(Ty::Events),
        example: r#"collect alerts = webhook_events(format: "alertmanager")"#,
    },
    OperatorSpec {
        name: "logs.file",
        kind: StageKind::Collect,
        summary: "Reads log records from a text file as Events, following rotations.",
        doc: "Reads the lines appended since the last tick (a cursor kept in the state store; renames, delete-and-recreate and copytruncate are followed as for `csv`, a partial last line waits for the next tick). `header` splits each line into fields: every field but `<Content>` becomes a label, the message (`<Content>`) is annotation `message` and the whole record annotation `line`. A line the header does not match is kept, its whole text the message, and counted (`unmatched_header`). With `continuation`, a line matching that regex is appended (after a line break) to the record before it (stack traces): it is part of `line`, while `message` stays the first line's, so that `templates` groups records by their first line; the last record of a tick waits for the next line, at most `continuation_wait` (or until its file is rotated away), and is part of the cursor. Invalid UTF-8 is decoded lossily (`invalid_utf8`), a line or record over `max_line` bytes is cut (`line_truncated`); both are counted and kept. Records carry the time they were read unless `timestamp: \"header\"`. See docs/logs.md.",
        inputs: &[],
        params: &[
            p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
            p("header", Ty::String, Str("<Content>"), "The line's layout, e.g. `<Date> <Time> <Level> <Component>: <Content>` (docs/logs.md); `<Content>` is the message."),
            p("continuation", Ty::String, Optional, "A regular expression: a line it matches continues the previous record, e.g. `^\\s` for indented stack traces."),
            min("continuation_wait", Ty::Duration, Dur(5_000), 0.0, "How long the last record waits for continuation lines (it is emitted at the first tick after this)."),
            choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
            choice("timestamp", &["read", "header"], Str("read"), "The events' time: when the record was read, or the header's `<Timestamp>` field (else `<Date> <Time>`), parsed as in `csv`; a record whose time does not parse gets the read time and is counted (`bad_timestamp`)."),
            range("max_line", Ty::Int, Int(65_536), 64.0, 67_108_864.0, "The longest line (and multi-line record) kept, in bytes; longer ones are cut."),
            range("max_read", Ty::Int, Int(16_777_216), 65_536.0, 67_108_864.0, "The most bytes read per tick (at most 64 MiB); a backlog is read over the next ticks, so a log written faster than `max_read` per tick falls behind: raise it or tick more often. Each record in flight costs about 3 KB (16 MiB of HDFS lines: about 500 MB). A line longer than this is skipped (counted)."),
            p("labels", Ty::Map, Optional, "Labels added to every event."),
        ],
        output: Output::Fixed(Ty::Events),
        example: r#"collect lines = logs.file(path: "/var/log/app.log", header: "<Date> <Time> <Level> <Component>: <Content>", continuation: "^\\s")"#,
    },
    OperatorSpec {
        name: "logs.jsonl",
        kind: StageKind::Collect,
        summary: "Reads JSON log records (one object per line) from a file as Events, following rotations.",
        doc: "Like `logs.file`, for structured logs: field `message` of each object is annotation `message`, the fields in `label_fields` are labels (non-strings as JSON text), the line is annotation `line`. A line that is not a JSON object is kept whole as the message and counted (`not_json`); an object without the message field likewise (`no_message`). Records carry the time they were read unless `timestamp_field` is given.",
        inputs: &[],
        params: &[
            p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
            p("message", Ty::String, Str("msg"), "The field holding the message."),
            p("label_fields", Ty::List(Scalar::String), Strs(&[]), "Fields copied into the labels."),
            p("timestamp_field", Ty::String, Optional, "A field holding the record's time (RFC 3339, `YYYY-MM-DD HH:MM:SS` or Unix seconds); the read time when absent."),
            choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
            range("max_line", Ty::Int, Int(65_536), 64.0, 67_108_864.0, "The longest line kept, in bytes; longer ones are cut."),
            range("max_read", Ty::Int, Int(16_777_216), 65_536.0, 67_108_864.0, "The most bytes read per tick (at most 64 MiB), as for `logs.file`."),
            p("labels", Ty::Map, Optional, "Labels added to every event."),
        ],
        output: Output::Fixed(Ty::Events),
        example: r#"collect lines = logs.jsonl(path: "/var/log/app.jsonl", message: "msg", label_fields: ["level", "service"])"#,
    },
    // ======================== preprocess ========================
    OperatorSpec {
        name: "resample",
        kind: StageKind::Preprocess,
        summary: "Puts a series on a regular time grid.",
        doc: "Aggregates the samples of each interval of length `every` into one sample, using `agg`. Empty intervals produce no sample (use `fill`).",
        inputs: &[input("input", NUMERIC, "The series to resample.")],
        params: &[
            min("every", Ty::Duration, Required, 1.0, "The grid interval."),
            choice("agg", &["mean", "sum", "min", "max", "first", "last", "count", "median"], Str("mean"), "How samples in an interval are combined."),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"preprocess grid = resample(raw, every: 30s, agg: "max")"#,
    },
    OperatorSpec {
        name: "fill",
        kind: StageKind::Preprocess,
        summary: "Fills gaps and NaN values.",
        doc: "Replaces missing grid points and NaN values: with the previous value, by linear interpolation, with zero, or with a constant. Gaps longer than `max_gap` are left open.",
        inputs: &[input("input", NUMERIC, "The series to fill.")],
        params: &[
            choice("method", &["previous", "linear", "zero", "value"], Str("previous"), "How gaps are filled."),
            p("value", Ty::Float, Optional, "The constant for `method: \"value\"`."),
            p("max_gap", Ty::Duration, Optional, "Leave gaps longer than this open."),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"preprocess filled = fill(raw, "linear", max_gap: 5m)"#,
    },
    OperatorSpec {
        name: "normalize",
        kind: StageKind::Preprocess,
        summary: "Scales a series: z-score, min-max or robust.",
        doc: "Streaming normalisation with statistics carried across ticks: `z` subtracts the mean and divides by the standard deviation; `minmax` maps to [0,1]; `robust` uses the median and the median absolute deviation. With `window`, statistics cover only that trailing window.",
        inputs: &[input("input", NUMERIC, "The series to scale.")],
        params: &[
            choice("method", &["z", "minmax", "robust"], Str("z"), "The scaling."),
            p("window", Ty::Duration, Optional, "A trailing window for the statistics (all history when absent)."),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"preprocess scaled = normalize(raw, method: "robust", window: 6h)"#,
    },
    OperatorSpec {
        name: "diff",
        kind: StageKind::Preprocess,
        summary: "Differences a series (or turns a counter into a rate).",
        doc: "Outputs `x[t] - x[t-lag]`. With `rate: true`, divides by the elapsed seconds and treats decreases as counter resets, like PromQL's `rate`.",
        inputs: &[input("input", NUMERIC, "The series to difference.")],
        params: &[min("lag", Ty::Int, Int(1), 1.0, "How many samples back to subtract."), p("rate", Ty::Bool, Bool(false), "Per-second rate with counter-reset handling.")],
        output: Output::Fixed(Ty::Series),
        example: r#"preprocess per_sec = diff(raw, rate: true)"#,
    },
    OperatorSpec {
        name: "rolling",
        kind: StageKind::Preprocess,
        summary: "Rolling statistics over a trailing window.",
        doc: "For each sample, the statistics of the samples in the trailing `window`, one output series per statistic (label `stat`). Quantiles are `p50`, `p90`, `p95`, `p99`.",
        inputs: &[input("input", NUMERIC, "The series.")],
        params: &[
            min("window", Ty::Duration, Required, 1.0, "The trailing window."),
            ParamSpec {
                name: "stats",
                ty: Ty::List(Scalar::String),
                default: Strs(&["mean"]),
                choices: &["mean", "std", "median", "mad", "min", "max", "sum", "count", "p50", "p90", "p95", "p99"],
                min: None,
                max: None,
                doc: "The statistics computed.",
            },
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"preprocess stats = rolling(raw, window: 1h, stats: ["median", "mad"])"#,
    },
    OperatorSpec {
        name: "window",
        kind: StageKind::Preprocess,
        summary: "Turns a series into sliding windows (Features) for models.",
        doc: "Emits, for each new sample, the vector of the last `size` values (every `stride` samples): the input of autoencoders and forecasters.",
        inputs: &[input("input", NUMERIC, "The series.")],
        params: &[range("size", Ty::Int, Int(32), 2.0, 1_048_576.0, "Values per window."), min("stride", Ty::Int, Int(1), 1.0, "Samples between windows.")],
        output: Output::Fixed(Ty::Features),
        example: r#"preprocess windows = window(raw, size: 64)"#,
    },
    OperatorSpec {
        name: "select",
        kind: StageKind::Preprocess,
        summary: "Keeps the series or events whose labels match.",
        doc: "Filters by a Prometheus-style label selector: `{job=\"node\", instance=~\"web-.*\", env!=\"dev\"}`.",
        inputs: &[input("input", &[Ty::Series, Ty::Events], "Series or events to filter.")],
        params: &[p("match", Ty::String, Required, "The label selector.")],
        output: Output::SameAsInput(0),
        example: r#"preprocess web = select(raw, match: "{job=\"web\"}")"#,
    },
    OperatorSpec {
        name: "aggregate",
        kind: StageKind::Preprocess,
        summary: "Aggregates series, or counts events, by labels.",
        doc: "Combines the series (or events) that share the values of the `by` labels into one series per group, at each timestamp, or per `every` interval. Events are counted; the last three records counted per group (their `line` or `message` annotation: log records) go along with the series as its samples, and an incident opened on it shows them (`incident.samples`).",
        inputs: &[input("input", &[Ty::Series, Ty::Events], "Series to combine or events to count.")],
        params: &[
            p("by", Ty::List(Scalar::String), Strs(&[]), "The labels that define a group (all series together when empty)."),
            choice("op", &["sum", "mean", "min", "max", "count"], Str("sum"), "How values are combined."),
            p("every", Ty::Duration, Optional, "Aggregate per interval rather than per timestamp."),
        ],
        output: Output::Fixed(Ty::Series),
        example: r#"preprocess per_job = aggregate(events, by: ["alertname"], op: "count", every: 1m)"#,
    },
    OperatorSpec {
        name: "templates",
        kind: StageKind::Preprocess,
        summary: "Groups log records into templates (the message with its variables as `<*>`).",
        doc: "Mines each event's message online with vigil's template miner (docs/logs.md) and passes the event on with label `template_id` (a number, stable across restarts and reloads: the templates are kept in the state store), label and annotation `template` (the template's text as of this event; a later merge may widen it) and annotation `params` (a JSON array of the message's text at each `<*>`, each at most 1 KiB). Count records per template with `aggregate(templates, by: [\"template_id\", \"template\"], op: \"count\", every: 1m)`. At most `max_templates` live templates: beyond it the least recently matched eighth are evicted (`vigil_stage_events_total{event=\"template_evicted\"}`; creations and merges are counted there too) and a message of an evicted template gets a new id. Events without the field are dropped and counted (`no_message`).",
        inputs: &[input("input", &[Ty::Events], "Log records, e.g. from `logs.file`.")],
        params: &[
            p("field", Ty::String, Str("message"), "The annotation (else label) holding the message."),
            p("masks", Ty::List(Scalar::String), Strs(&[]), "Extra variables: regular expressions whose every match is a `<*>`, e.g. `req-[0-9a-f]+`."),
            min("max_templates", Ty::Int, Int(10_000), 8.0, "The most live templates."),
        ],
        output: Output::Fixed(Ty::Events),
        example: r#"preprocess tpl = templates(events, masks: ["req-[0-9a-f]+"], max_templates: 5000)"#,
    },
    // ======================== train ========================
    OperatorSpec {
        name: "autoencoder",
        kind: StageKind::Train,
        summary: "Trains an autoencoder over windows; anomalies reconstruct badly.",
        doc: "A dense autoencoder (burn, CPU) over sliding windows of the input, trained to reconstruct normal behaviour. Predict with `score`, which turns the reconstruction error into a calibrated anomaly score.",
        inputs: &[input("input", &[Ty::Series, Ty::Features], "A series (windowed with `window`) or windows.")],
        params: &[
            range("window", Ty::Int, Int(32), 2.0, MAX_DIM, "Values per window when the input is a series."),
            range("hidden", Ty::List(Scalar::Int), Ints(&[16, 4]), 1.0, MAX_DIM, "Sizes of the encoder's layers; the decoder mirrors them."),
            min("epochs", Ty::Int, Int(20), 1.0, "Training epochs."),
            min("learning_rate", Ty::Float, Float(0.001), 0.0, "Adam's learning rate."),
            min("batch_size", Ty::Int, Int(64), 1.0, "Windows per batch."),
            p("seed", Ty::Int, Int(42), "Seed for initialisation and shuffling."),
        ],
        output: Output::Fixed(Ty::Model),
        example: r#"train ae = autoencoder(raw, window: 64, hidden: [32, 8], epochs: 10) { retrain every 6h }"#,
    },
    OperatorSpec {
        name: "forecaster",
        kind: StageKind::Train,
        summary: "Trains a forecaster; anomalies are large residuals.",
        doc: "A small MLP (burn, CPU) that predicts the next `horizon` values from the last `lookback`. Predict with `score` (residual-based score) or `forecast` (bounds).",
        inputs: &[input("input", NUMERIC, "The series.")],
        params: &[
            range("lookback", Ty::Int, Int(32), 1.0, MAX_DIM, "Values the forecast looks at."),
            range("horizon", Ty::Int, Int(1), 1.0, MAX_DIM, "Values forecast ahead."),
            range("hidden", Ty::List(Scalar::Int), Ints(&[32]), 1.0, MAX_DIM, "Hidden layer sizes."),
            min("epochs", Ty::Int, Int(20), 1.0, "Training epochs."),
            min("learning_rate", Ty::Float, Float(0.001), 0.0, "Adam's learning rate."),
            p("seed", Ty::Int, Int(42), "Seed for initialisation and shuffling."),
        ],
        output: Output::Fixed(Ty::Model),
        example: r#"train fc = forecaster(raw, lookback: 48, horizon: 4)"#,
    },
    OperatorSpec {
        name: "baseline",
        kind: StageKind::Train,
        summary: "Fits a seasonal profile: the typical value and spread per time of day/week.",
        doc: "A classical baseline: for each bucket of the season (e.g. each 5 minutes of the day), the median and median absolute deviation of past values. Cheap, explainable, and strong on periodic series.",
        inputs: &[input("input", NUMERIC, "The series.")],
        params: &[min("season", Ty::Duration, Dur(86_400_000), 1.0, "The season's length."), min("bucket", Ty::Duration, Dur(300_000), 1.0, "The resolution within a season.")],
        output: Output::Fixed(Ty::Model),
        example: r#"train profile = baseline(raw, season: 1w, bucket: 15m)"#,
    },
    // ======================== predict ========================
    OperatorSpec {
        name: "score",
        kind: StageKind::Predict,
        summary: "Scores data with a trained model, calibrated to [0,1].",
        doc: "Runs the model's active version on the input and turns its error into a score in [0,1]: the tail probability of the error against a rolling history of the model's own errors, so that one threshold serves very different series. After a detection, further detections are suppressed for `suppress`.",
        inputs: &[input("model", &[Ty::Model], "The trained model."), input("input", &[Ty::Series, Ty::Features], "The data to score.")],
        params: &[
            min("history", Ty::Int, Int(1000), 10.0, "Errors kept for calibration."),
            min("threshold", Ty::Float, Float(0.99), 0.0, "Scores at or above this are anomalous."),
            p("suppress", Ty::Duration, Dur(0), "Quiet period after a detection."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict s = model.score(raw, threshold: 0.995)"#,
    },
    OperatorSpec {
        name: "novelty",
        kind: StageKind::Predict,
        summary: "Scores how new each value, its time-of-day context and its short shape are against the series' recent past; needs no training.",
        doc: "The detector behind the stdlib's `nab` stage. Three channels per sample, each relative to the series' robust range (0.1%–99.9% quantiles of the last 28 days, at least 8 064 samples): how far the value is from every value of that reference (less the data's smallest step); how far it is outside what the series did at the same time of day on each of the previous 7 days and the same time of week 1–2 weeks back (it must persist a few samples); and how far the last half hour's shape is from the same half hour on those days. Each channel's surprise is weighed by an HTM-style likelihood against its own last 2 days, so one threshold serves very different series. A new report within `suppress` needs a higher score and twice the odds of the last one, so a lasting anomaly is one detection. Time and memory per sample are bounded (not growing with the history). The sampling step is inferred from the first 50 samples; nothing is scored during the first day.",
        inputs: &[input("input", NUMERIC, "The series.")],
        params: &[
            p("suppress", Ty::Duration, Dur(43_200_000), "Quiet period after a detection."),
            range("memory", Ty::Int, Int(25_000), 100.0, 10_000_000.0, "At most this many samples remembered per series (the reference is 28 days, at least 8 064 samples)."),
            min("threshold", Ty::Float, Float(0.79), 0.0, "Scores at or above this are anomalous (0.79: the threshold cross-validation chose on NAB)."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict novel = novelty(raw, suppress: 6h)"#,
    },
    OperatorSpec {
        name: "ensemble",
        kind: StageKind::Predict,
        summary: "Combines two detectors' scores of the same series.",
        doc: "Joins two Scores inputs by series and timestamp and combines their scores: `max` raises an alarm when either detector does, `mean` when they agree. Points only one side scored keep that side's score. Nest ensembles to combine more detectors.",
        inputs: &[input("a", &[Ty::Scores], "One detector's scores."), input("b", &[Ty::Scores], "The other's.")],
        params: &[
            choice("op", &["max", "mean"], Str("max"), "How the two scores are combined."),
            min("threshold", Ty::Float, Float(0.99), 0.0, "Combined scores at or above this are anomalous."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict both = ensemble(scores, scores, op: "mean")"#,
    },
    OperatorSpec {
        name: "zscore",
        kind: StageKind::Predict,
        summary: "Scores each sample by its (robust) z-score over a trailing window; needs no training.",
        doc: "Compares each sample with the statistics of the trailing `window` before it: mean and standard deviation (`standard`) or median and MAD (`robust`). The score maps |z| to [0,1] so that |z| = threshold gives 0.5 and larger deviations approach 1; samples with |z| ≥ threshold are anomalous.",
        inputs: &[input("input", NUMERIC, "The series.")],
        params: &[
            min("window", Ty::Duration, Dur(3_600_000), 1.0, "The trailing window."),
            choice("method", &["robust", "standard"], Str("robust"), "Median/MAD or mean/standard deviation."),
            min("threshold", Ty::Float, Float(4.0), 0.0, "|z| at which a sample is anomalous."),
            min("min_samples", Ty::Int, Int(30), 1.0, "Samples needed in the window before scoring."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict z = zscore(raw, window: 30m, threshold: 3.5)"#,
    },
    OperatorSpec {
        name: "threshold",
        kind: StageKind::Predict,
        summary: "Flags values above or below fixed bounds.",
        doc: "A static rule: anomalous when the value is above `above` or below `below` for at least `for`. The score is 1 when anomalous, otherwise how close the value is to a bound.",
        inputs: &[input("input", &[Ty::Series, Ty::Scores], "A series, or scores (compared by their score).")],
        params: &[
            p("above", Ty::Float, Optional, "Upper bound."),
            p("below", Ty::Float, Optional, "Lower bound."),
            p("for", Ty::Duration, Dur(0), "How long a bound must be crossed."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict hot = threshold(raw, above: 90.0, for: 2m)"#,
    },
    OperatorSpec {
        name: "correlate",
        kind: StageKind::Predict,
        summary: "Groups the incidents of several respond stages into situations — one per cascade, with its probable origin — so that a respond stage after it pages once.",
        doc: "Incidents join an open situation when they are close in time (within `window` of its members, extended while members keep arriving, at most `max_span` in all) and related by any of: a shared value of one of the `by` labels, services within `hops` edges of each other in the topology (`topology`: a JSON file, `{\"edges\": [[\"checkout\", \"payments\"]]}` or `{\"checkout\": [\"payments\"]}` meaning checkout depends on payments; or inline `edges: [\"checkout -> payments\"]`; the service is the label `service_label`), or titles (their series) at least `similarity` alike (word Jaccard, digits masked). A situation is open while any member fires and closes `window` after the last member resolved; a member that fires again within the window rejoins it. Its probable origin is the member furthest upstream in the topology, else the earliest. Output: one series per situation (label `situation` and the first member's labels), anomalous while it is open, with annotations `origin`, `members` and `samples` (one line per member: key, stage, why it joined), so that a respond stage sends one notification per situation; `GET /api/v1/situations` and `vigil situations` show them. Time is the incidents' own. Situations survive restarts and reloads. See docs/correlation.md.",
        inputs: &[inputs("input", &[Ty::Incidents], "One or more respond stages.")],
        params: &[
            min("window", Ty::Duration, Dur(300_000), 0.0, "How close in time incidents must be to join a situation."),
            min("max_span", Ty::Duration, Dur(3_600_000), 0.0, "The longest a situation accepts new members for, from its first."),
            p("by", Ty::List(Scalar::String), Strs(&["service", "host"]), "Labels: incidents sharing a value of any of them are related."),
            p("topology", Ty::String, Optional, "A JSON file of service dependencies, relative to the pipeline file."),
            p("edges", Ty::List(Scalar::String), Optional, "Service dependencies inline, `\"a -> b\"` meaning a depends on b (with `topology`, both count)."),
            min("hops", Ty::Int, Int(1), 0.0, "How many dependency edges (either direction) may separate related services."),
            p("service_label", Ty::String, Str("service"), "The label naming an incident's service in the topology."),
            min("similarity", Ty::Float, Optional, 0.0, "Relate incidents whose titles are at least this alike (0–1); unset: off."),
            min("max_open", Ty::Int, Int(100_000), 1.0, "Open situations kept; one more closes the oldest (counted)."),
            min("max_members", Ty::Int, Int(10_000), 1.0, "Members kept per situation; later ones are counted, not kept."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"respond latency = log(scores)
  respond errors = log(scores)
  predict situations = correlate(latency, errors, by: ["service"], edges: ["checkout -> payments"])"#,
    },
    OperatorSpec {
        name: "new_templates",
        kind: StageKind::Predict,
        summary: "Scores log templates never seen before, after a warm-up, so that a respond stage can page on a new message.",
        doc: "Reads the output of `templates` and, for each template created after the warm-up, emits one anomalous score (1.0) at the event's time, as a series `new_template` whose labels are the event's, `template` (its text) and `sample` (the message, at most 1 KiB). The warm-up is `after` from the first event the stage saw, in data time (the events' timestamps: the read time with `logs.file`'s default). New means an id higher than every id seen: ids are counters, so the stage keeps two numbers (in the state store). A template evicted by `max_templates` that comes back counts as new. Each new template is a series that reports once: give the respond stage a `resolve_timeout` so its incident resolves.",
        inputs: &[input("input", &[Ty::Events], "The output of `templates`.")],
        params: &[min("after", Ty::Duration, Dur(3_600_000), 0.0, "The warm-up: templates first seen before it are known ones.")],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict fresh = new_templates(events, after: 1h)"#,
    },
    OperatorSpec {
        name: "forecast",
        kind: StageKind::Predict,
        summary: "Forecasts with bounds using a trained forecaster or baseline.",
        doc: "Emits the expected value and the lower and upper bounds of the `interval` for each sample; the sample is anomalous when outside the bounds.",
        inputs: &[input("model", &[Ty::Model], "A forecaster or baseline."), input("input", NUMERIC, "The series.")],
        params: &[min("horizon", Ty::Int, Int(1), 1.0, "Steps ahead."), range("interval", Ty::Float, Float(0.95), 0.0, 1.0, "Coverage of the bounds.")],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict fc = forecast(model, raw, interval: 0.99)"#,
    },
    OperatorSpec {
        name: "drift",
        kind: StageKind::Predict,
        summary: "How far a model's live input has drifted from its training data, as scores.",
        doc: "For every series of the train stage, the population stability index of its newest 256 values against the active version's training data (its deciles), each time the train stage computes it (every 32 samples): the value is the index, the score `psi / (psi + threshold)` (0.5 at the threshold), anomalous above the threshold. A respond stage over it alerts on drift like on any other anomaly. By the usual reading an index below 0.1 is stable, above 0.25 a major shift.",
        inputs: &[input("model", &[Ty::Model], "The trained model.")],
        params: &[min("threshold", Ty::Float, Float(0.25), 0.0, "The index above which the input has drifted.")],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict moved = model.drift(threshold: 0.2)"#,
    },
    OperatorSpec {
        name: "forecast_breach",
        kind: StageKind::Predict,
        summary: "Raises an incident before a threshold is crossed, from the trend of the last `window`.",
        doc: "A least-squares line through the last `window` of each series, with the standard error of its slope: a breach is forecast when the cautious trajectory (the slope less `sigmas` standard errors) reaches `above` within `within`, and a series already at or above the bound is anomalous too. `sigmas: 0.0` is Prometheus's `predict_linear(x[window], within) > above`; the standard error makes a short or noisy trend count for less. Expected value: the line's forecast at `within`; bounds: the cautious and bold trajectories there; score 0.5 when the breach is exactly `within` away. O(1) per sample, memory of one window.",
        inputs: &[input("input", &[Ty::Series], "The series (a disk's used share, a process's memory, a queue's depth).")],
        params: &[
            p("above", Ty::Float, Required, "The bound whose crossing is forecast."),
            min("within", Ty::Duration, Dur(14_400_000), 1.0, "How far ahead a breach raises an incident."),
            min("window", Ty::Duration, Dur(21_600_000), 1.0, "The history the trend is fitted on."),
            min("sigmas", Ty::Float, Float(1.64), 0.0, "Standard errors taken off the slope (1.64: one-sided 95%; 0: plain extrapolation)."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict filling = forecast_breach(raw, above: 90.0, within: 4h)"#,
    },
    OperatorSpec {
        name: "budget",
        kind: StageKind::Predict,
        summary: "Sets a detector's threshold from its own scores so it raises about `alarms` alarms per `per`.",
        doc: "Keeps each series' scores over the last `horizon` and chooses the lowest threshold at which the scores would have started no more than `alarms` alarms per `per` there (an alarm is the start of a run of scores at or above the threshold); a sample is anomalous at or above it. Until a full `per` of scores is in, nothing is anomalous. Verdicts adapt it: scores inside windows on-call marked `false_positive` do not count toward the budget and the threshold stays above the highest of them for `horizon`. The score is rescaled so that the threshold maps to 0.5.",
        inputs: &[input("input", &[Ty::Scores], "A detector's scores.")],
        params: &[
            min("alarms", Ty::Float, Float(1.0), 0.0, "Alarms allowed per period, per series."),
            min("per", Ty::Duration, Dur(86_400_000), 1.0, "The period."),
            min("horizon", Ty::Duration, Dur(604_800_000), 1.0, "How much score history sets the threshold."),
        ],
        output: Output::Fixed(Ty::Scores),
        example: r#"predict paged = budget(scores, alarms: 2, per: 1d)"#,
    },
    // ======================== respond ========================
    OperatorSpec {
        name: "email",
        kind: StageKind::Respond,
        summary: "Sends email over SMTP, one thread per incident.",
        doc: "Opens or updates incidents and mails their transitions through lettre: STARTTLS or TLS (certificates checked against the web PKI roots, or the authorities in `ca`), optional authentication (PLAIN or LOGIN) from the SMTP URL (`smtp://user:pass@host:587`). Messages of one incident share a thread (stable Message-ID, In-Reply-To). Subject and body are minijinja templates over the incident.",
        inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too).")],
        params: &[
            p("to", Ty::List(Scalar::String), Required, "Recipients."),
            p("smtp", Ty::Secret, Required, "The SMTP URL, as a secret (it may hold a password)."),
            p("from", Ty::String, Str("vigil@localhost"), "The sender."),
            choice("tls", &["starttls", "tls", "none"], Str("starttls"), "Transport security."),
            p("ca", Ty::String, Optional, "A PEM file of the authorities that sign the server's certificate (an internal CA), relative to the pipeline file; they replace the public web PKI roots for this server."),
            p("subject", Ty::String, Str("[vigil] {{ incident.status }}: {{ incident.key }}"), "Subject template."),
            p("body", Ty::String, Optional, "Body template (a default summary when absent)."),
        ],
        output: Output::Fixed(Ty::Incidents),
        example: r#"respond mail = email(scores, to: ["sre@example.com"], smtp: secret("env:SMTP_URL"))"#,
    },
    OperatorSpec {
        name: "webhook",
        kind: StageKind::Respond,
        summary: "Posts incidents as signed JSON to a URL.",
        doc: "POSTs each incident transition as JSON. With `secret`, adds `X-Vigil-Signature: sha256=<hex>`, an HMAC-SHA256 of the body. 5xx and 429 answers are retried with backoff; other 4xx are not.",
        inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too).")],
        params: &[
            p("url", Ty::String, Required, "The receiver."),
            p("secret", Ty::Secret, Optional, "The HMAC key."),
            min("timeout", Ty::Duration, Dur(10_000), 1.0, "Request timeout."),
        ],
        output: Output::Fixed(Ty::Incidents),
        example: r#"respond hook = webhook(scores, url: "https://ops.example.com/hooks/vigil", secret: secret("env:HOOK_KEY"))"#,
    },
    OperatorSpec {
        name: "slack",
        kind: StageKind::Respond,
        summary: "Posts incidents to a Slack incoming webhook.",
        doc: "Sends `{text, blocks}` to a Slack incoming webhook URL, which is a credential and so a secret.",
        inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too).")],
        params: &[p("url", Ty::Secret, Required, "The incoming webhook URL."), p("text", Ty::String, Optional, "Message template (a default summary when absent).")],
        output: Output::Fixed(Ty::Incidents),
        example: r#"respond chat = slack(scores, url: secret("env:SLACK_WEBHOOK"))"#,
    },
    OperatorSpec {
        name: "pagerduty",
        kind: StageKind::Respond,
        summary: "Triggers, acknowledges and resolves PagerDuty incidents (Events v2).",
        doc: "Sends Events API v2 `trigger`, `acknowledge` and `resolve` events with the incident's key as `dedup_key`. 429 and 5xx are retried.",
        inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too).")],
        params: &[
            p("routing_key", Ty::Secret, Required, "The integration's routing key."),
            choice("severity", &["critical", "error", "warning", "info"], Str("error"), "The PagerDuty severity."),
            p("url", Ty::String, Str("https://events.pagerduty.com/v2/enqueue"), "The Events API endpoint."),
        ],
        output: Output::Fixed(Ty::Incidents),
        example: r#"respond page = pagerduty(scores, routing_key: secret("env:PD_KEY"), severity: "critical")"#,
    },
    OperatorSpec {
        name: "alertmanager",
        kind: StageKind::Respond,
        summary: "Pushes incidents to Alertmanager as alerts.",
        doc: "POSTs `/api/v2/alerts` with labels and annotations, re-sent every `resend` while the incident fires, with `endsAt` when it resolves.",
        inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too).")],
        params: &[
            p("url", Ty::String, Required, "The Alertmanager, e.g. `http://127.0.0.1:9093`."),
            p("labels", Ty::Map, Optional, "Extra alert labels."),
            p("annotations", Ty::Map, Optional, "Alert annotations (templates)."),
            min("resend", Ty::Duration, Dur(60_000), 1000.0, "Re-send interval while firing."),
        ],
        output: Output::Fixed(Ty::Incidents),
        example: r#"respond am = alertmanager(scores, url: "http://127.0.0.1:9093", labels: { team: "sre" })"#,
    },
    OperatorSpec {
        name: "exec",
        kind: StageKind::Respond,
        summary: "Runs a remediation command (argv, never a shell).",
        doc: "Runs `command` (argv list; the first element is the program; elements may be templates) on each incident transition, without a shell, with a timeout after which it is killed, and only the environment variables in `env`. Output is kept in the audit trail.",
        inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too).")],
        params: &[
            p("command", Ty::List(Scalar::String), Required, "The program and its arguments."),
            min("timeout", Ty::Duration, Dur(30_000), 1.0, "Kill the command after this."),
            p("env", Ty::List(Scalar::String), Strs(&[]), "Environment variables passed through."),
            p(
                "allow",
                Ty::String,
                Str("^[A-Za-z0-9_][A-Za-z0-9._:@=+-]*$"),
                "Regular expression every value a template puts into an argument must match, else the run is refused and audited (an argument may never start with `-` unless its literal text does).",
            ),
            p("retry_on_crash", Ty::Bool, Bool(false), "Run the command again after a crash interrupted it (by default a remediation runs at most once)."),
        ],
        output: Output::Fixed(Ty::Incidents),
        example: r#"respond fix = exec(scores, command: ["systemctl", "restart", "{{ labels.service }}"], timeout: 1m)"#,
    },
    OperatorSpec {
        name: "log",
        kind: StageKind::Respond,
        summary: "Writes incidents to the console and STATE/outbox.jsonl.",
        doc: "Opens and resolves incidents like every respond operator and reports each transition on the console and in the outbox file. The demo's default: it works offline.",
        inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too).")],
        params: &[p("message", Ty::String, Str("{{ incident.status }} {{ incident.key }} score={{ incident.score }}"), "The line written (a template).")],
        output: Output::Fixed(Ty::Incidents),
        example: r#"respond console = log(scores, when: scores.score > 0.9)"#,
    },
];

/// The operator called `name`.
pub fn operator(name: &str) -> Option<&'static OperatorSpec> {
    OPERATORS.iter().find(|o| o.name == name)
}

/// Markdown documentation of every operator (the content of `docs/operators.md`).
pub fn operators_markdown() -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "# Built-in operators\n\nGenerated from `src/stages/mod.rs` by `vigil explain operators`; a test keeps this file in sync.\n\n",
    );
    s.push_str("Inputs are positional and connect a stage to other stages (DAG edges). Parameters are given by name (or by position after the inputs). `a | op(...)` passes `a` as the first input.\n");
    for kind in StageKind::ALL {
        let _ = write!(s, "\n## {kind}\n");
        for op in OPERATORS.iter().filter(|o| o.kind == kind) {
            s.push('\n');
            s.push_str(&operator_markdown(op));
        }
    }
    s.push_str("\n## Stage options\n\nOptions go in braces after a stage's expression: `respond page = email(...) { pending for 2m  repeat every 4h }`.\n\n");
    s.push_str(&crate::check::options::options_markdown());
    s
}

/// Markdown documentation of one operator: summary, doc, inputs, parameters, output and
/// example.
pub fn operator_markdown(op: &OperatorSpec) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(s, "### `{}` ({})\n\n{}\n\n{}\n\n", op.name, op.kind, op.summary, op.doc);
    let out = match op.output {
        Output::Fixed(t) => t.to_string(),
        Output::SameAsInput(i) => format!("the type of `{}`", op.inputs[i].name),
    };
    if !op.inputs.is_empty() {
        s.push_str("| input | accepts | |\n|---|---|---|\n");
        for i in op.inputs {
            let _ = writeln!(s, "| `{}` | {} | {} |", i.name, types::one_of(i.types), i.doc);
        }
        s.push('\n');
    }
    s.push_str("| parameter | type | default | |\n|---|---|---|---|\n");
    for prm in op.all_params() {
        let mut doc = prm.doc.to_owned();
        if !prm.choices.is_empty() {
            doc.push_str(&format!(" One of: {}.", prm.choices.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")));
        }
        let shown =
            |m: f64| if prm.ty == Ty::Duration { crate::syntax::ast::Duration { millis: m as u64 }.to_string() } else { m.to_string() };
        match (prm.min, prm.max) {
            (Some(lo), Some(hi)) => doc.push_str(&format!(" From {} to {}.", shown(lo), shown(hi))),
            (Some(lo), None) => doc.push_str(&format!(" At least {}.", shown(lo))),
            (None, Some(hi)) => doc.push_str(&format!(" At most {}.", shown(hi))),
            (None, None) => {}
        }
        let _ = writeln!(s, "| `{}` | {} | {} | {} |", prm.name, prm.ty, default_str(&prm.default), doc.replace('|', "\\|"));
    }
    let _ = write!(s, "\nOutput: {out}.\n\n```vigil\n{}\n```\n", op.example);
    s
}

/// A default as shown in docs and `--help`.
pub fn default_str(d: &Default) -> String {
    match d {
        Required => "required".into(),
        Optional => "—".into(),
        Int(i) => format!("`{i}`"),
        Float(f) => format!("`{f:?}`"),
        Bool(b) => format!("`{b}`"),
        Str(s) => format!("`{}`", crate::syntax::print::quote(s)),
        Dur(ms) => format!("`{}`", crate::syntax::ast::Duration { millis: *ms }),
        Strs(v) => format!("`[{}]`", v.iter().map(|s| crate::syntax::print::quote(s)).collect::<Vec<_>>().join(", ")),
        Ints(v) => format!("`[{}]`", v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// A value an operator's parameters cannot take together (see [`cross_check`]).
#[derive(Debug)]
pub struct CrossCheck {
    /// The parameter to point at.
    pub param: &'static str,
    pub why: String,
    pub help: String,
}

/// Rules between an operator's parameters (evaluated, defaults filled, `Null` when an
/// optional one is absent), so that `vigil check` refuses what building would.
pub fn cross_check(op: &str, params: &std::collections::BTreeMap<String, crate::value::Value>) -> Option<CrossCheck> {
    use crate::value::Value;
    let get = |k: &str| params.get(k).unwrap_or(&Value::Null);
    match op {
        "fill" if matches!(get("method"), Value::Str(m) if m == "value") && matches!(get("value"), Value::Null) => Some(CrossCheck {
            param: "method",
            why: "`method: \"value\"` fills gaps with `value`, which is not given".into(),
            help: "add the constant, such as `value: 0.0`, or choose another method".into(),
        }),
        "baseline" => match (get("season"), get("bucket")) {
            (Value::Duration(season), Value::Duration(bucket)) if season / (*bucket).max(1) > 1_000_000 => Some(CrossCheck {
                param: "bucket",
                why: format!(
                    "a season of {} in buckets of {} is more than a million buckets",
                    crate::syntax::ast::Duration { millis: *season },
                    crate::syntax::ast::Duration { millis: *bucket }
                ),
                help: "use larger buckets or a shorter season".into(),
            }),
            _ => None,
        },
        _ => None,
    }
}
