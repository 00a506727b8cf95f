//! Stage options: `{ retry 3 backoff 1s  timeout 10s  retrain every 6h  min_samples 2000 }`.
//!
//! Each option has a form, and some belong to one stage kind. Codes: E0313–E0316, and
//! W0005 for an older spelling still accepted ([`DEPRECATED`], a string escalation target).

use crate::diagnostic::{suggest, Code, Diagnostic};
use crate::syntax::ast::{ExprKind, OptionArg, OptionValue, StageKind, StageOption};

/// A validated stage option.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageOpt {
    /// Retry a failed run `attempts` more times, waiting `backoff_ms` (doubling) between.
    Retry { attempts: u32, backoff_ms: u64 },
    /// Fail a run that takes longer than this.
    Timeout { ms: u64 },
    /// Retrain after this much time.
    RetrainEvery { ms: u64 },
    /// Retrain after this many new samples.
    RetrainSamples { samples: u64 },
    /// Train the first model only after this many samples.
    MinSamples { samples: u64 },
    /// Start retraining from the previous version's weights.
    WarmStart { enabled: bool },
    /// Until a model exists, score with this stage of the same pipeline.
    Fallback { stage: String },
    /// Open an incident only after the anomaly lasted this long.
    PendingFor { ms: u64 },
    /// Keep an incident firing this long after the anomaly cleared.
    KeepFiringFor { ms: u64 },
    /// Repeat the notification of an unacknowledged incident this often.
    Repeat { ms: u64 },
    /// At most `count` notifications per `per_ms`.
    RateLimit { count: u64, per_ms: u64 },
    /// Tell another respond stage of the pipeline when an incident is still firing and
    /// unacknowledged `after_ms` after it opened.
    Escalate { after_ms: u64, to: String },
    /// A maintenance window: from each time the five-field cron `schedule` (UTC) names, for
    /// `ms`, incidents open silenced. May be given more than once.
    Maintenance { schedule: String, ms: u64 },
    /// Resolve an incident once its series have sent no data for this long.
    ResolveTimeout { ms: u64 },
    /// Carry at most this many series; new ones beyond are dropped (counted).
    MaxSeries { count: u64 },
    /// Forget a series not seen for this long.
    SeriesIdle { ms: u64 },
    /// Whether training learns from on-call's verdicts (on by default).
    LearnFrom { feedback: bool },
    /// Retrain when the input's drift (population stability index) exceeds this.
    RetrainOnDrift { above: f64 },
    /// A retrained version first runs in shadow for this long (data time).
    Shadow { ms: u64 },
    /// How a challenger in shadow is promoted: automatically when better, or by hand.
    Promote { when_better: bool },
}

impl StageOpt {
    /// The option's name as written.
    pub fn name(&self) -> &'static str {
        match self {
            StageOpt::Retry { .. } => "retry",
            StageOpt::Timeout { .. } => "timeout",
            StageOpt::RetrainEvery { .. } | StageOpt::RetrainSamples { .. } | StageOpt::RetrainOnDrift { .. } => "retrain",
            StageOpt::MinSamples { .. } => "min_samples",
            StageOpt::WarmStart { .. } => "warm_start",
            StageOpt::Fallback { .. } => "fallback",
            StageOpt::PendingFor { .. } => "pending",
            StageOpt::KeepFiringFor { .. } => "keep_firing",
            StageOpt::Repeat { .. } => "repeat",
            StageOpt::RateLimit { .. } => "rate_limit",
            StageOpt::Escalate { .. } => "escalate",
            StageOpt::Maintenance { .. } => "maintenance",
            StageOpt::ResolveTimeout { .. } => "resolve_timeout",
            StageOpt::MaxSeries { .. } => "max_series",
            StageOpt::SeriesIdle { .. } => "series_idle",
            StageOpt::LearnFrom { .. } => "learn_from",
            StageOpt::Shadow { .. } => "shadow",
            StageOpt::Promote { .. } => "promote",
        }
    }
}

/// The options, their forms, the kinds they belong to (empty: every kind), and what they
/// do.
pub const OPTIONS: &[(&str, &str, &[StageKind], &str)] = &[
    ("retry", "retry 3 backoff 1s", &[], "Retry a failed run this many more times, waiting `backoff` (doubling each time; default 1s) in between."),
    ("timeout", "timeout 10s", &[], "Fail a run that takes longer than this."),
    (
        "retrain",
        "retrain every 6h | retrain every 5000 samples | retrain when drift > 0.25",
        &[StageKind::Train],
        "Train a new model version after this much time or this many new samples, or when the input has drifted: its population stability index against the active version's training data (newest 256 values) exceeds the number. A drift retrain waits for enough samples after the shift and learns from them only. A time or sample form and the drift form may be combined.",
    ),
    (
        "learn_from",
        "learn_from feedback | learn_from nothing",
        &[StageKind::Train],
        "Whether training uses on-call's verdicts (default `feedback`): windows confirmed as incidents (`true_positive`, `missed`) are left out of what the model learns as normal, windows marked `false_positive` are learned as normal with extra weight, and the errors the model made there raise its calibration.",
    ),
    (
        "shadow",
        "shadow for 1d",
        &[StageKind::Train],
        "A retrained version first runs in shadow beside the active one for this long (in the data's time): it scores the same data, its would-be alarms are recorded, never notified; then `promote` decides. The first version of a series is active at once.",
    ),
    (
        "promote",
        "promote when better | promote manual",
        &[StageKind::Train],
        "What happens after a shadow period (default `when better`): promote the candidate when it finds at least the known anomalies the active version finds and raises no more unconfirmed alarms (else reject it), or wait for `vigil models promote`. Both are audited with the figures.",
    ),
    ("min_samples", "min_samples 2000", &[StageKind::Train], "Train the first model only once a series has this many samples (default 500)."),
    ("warm_start", "warm_start true", &[StageKind::Train], "Start each retraining from the previous version's weights."),
    ("fallback", "fallback: other_stage", &[StageKind::Predict], "Until a series has a model, score it with this predict stage of the same pipeline."),
    ("pending", "pending for 2m", &[StageKind::Respond], "Open an incident only once the condition has held this long (flap control). Formerly `pending_for 2m`."),
    ("keep_firing", "keep_firing for 5m", &[StageKind::Respond], "Keep an incident firing this long after the condition stopped holding. Formerly `keep_firing_for 5m`."),
    ("repeat", "repeat every 4h", &[StageKind::Respond], "Repeat the notification of a firing, unacknowledged incident this often."),
    ("rate_limit", "rate_limit 10 per 1h", &[StageKind::Respond], "Send at most this many notifications per period from this stage; the rest are held back and audited as `rate_limited`."),
    (
        "escalate",
        "escalate after 30m to other_respond_stage",
        &[StageKind::Respond],
        "When an incident is still firing and unacknowledged this long after it opened, notify it once more through another respond stage of the pipeline (a manager's pager, say), named bare like `fallback:`'s stage. The target in quotes (`to \"other_respond_stage\"`) is the old spelling, accepted with a warning.",
    ),
    (
        "maintenance",
        "maintenance \"0 2 * * SAT\" for 2h",
        &[StageKind::Respond],
        "A maintenance window: from every time the cron schedule (five fields, UTC) names, for the given length, incidents open silenced (recorded, audited, not sent). May be given more than once.",
    ),
    (
        "resolve_timeout",
        "resolve_timeout 30m",
        &[StageKind::Respond],
        "A series that has sent no data for this long no longer keeps an incident firing; an incident none of whose series report resolves (audited: `no data from ... for ...`). Without it an incident waits for data that clears it. Checked whenever the stage runs: a tick whose source fails does not reach it. Follows the wall clock, so not under `vigil test`.",
    ),
    (
        "max_series",
        "max_series 10000",
        &[],
        "Carry at most this many series (default 10000): a new series beyond it is dropped, counted in `vigil_skipped_total{reason=\"series_limit\"}` and warned about; known series go on.",
    ),
    (
        "series_idle",
        "series_idle 24h",
        &[],
        "Forget a series not seen for this long (default 24h): its state here and downstream (windows, models in training, gauges) is dropped, making room under `max_series`. Follows the wall clock.",
    ),
];

/// The stage options as a Markdown table (for `docs/operators.md`).
pub fn options_markdown() -> String {
    let mut s = String::from("| option | form | stages | what it does |\n|---|---|---|---|\n");
    for (name, form, kinds, doc) in OPTIONS {
        let kinds = if kinds.is_empty() { "all".to_owned() } else { kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ") };
        s.push_str(&format!("| `{name}` | `{}` | {kinds} | {doc} |\n", form.replace('|', "\\|")));
    }
    s
}

/// Old option names still accepted for one release, with W0005: the old name, the new
/// one, and the word the new form puts before the old one's arguments.
pub use crate::syntax::ast::DEPRECATED_OPTIONS as DEPRECATED;

/// Options that may be given more than once.
const REPEATABLE: &[&str] = &["maintenance"];

enum W<'a> {
    Kw(&'a str),
    Int(i64),
    Num(f64),
    Dur(u64),
    Bool(bool),
    Str(&'a str),
    Name(&'a str),
    Other,
}

/// Validates the options of a stage of `kind`, reporting problems into `diags`.
pub fn check_options(opts: &[StageOption], kind: StageKind, diags: &mut Vec<Diagnostic>) -> Vec<(StageOpt, crate::source::Span)> {
    let mut out: Vec<(StageOpt, crate::source::Span)> = Vec::new();
    let mut seen: Vec<(&str, crate::source::Span)> = Vec::new();
    for o in opts {
        let written = o.name.node.as_str();
        let deprecated = DEPRECATED.iter().find(|(old, _, _)| *old == written);
        let name = deprecated.map_or(written, |(_, new, _)| *new);
        if let Some((old, new, word)) = deprecated {
            let args = match &o.value {
                OptionValue::Words(ws) => ws.iter().map(word_text).collect::<Vec<_>>().join(" "),
                OptionValue::Expr(e) => crate::syntax::print::flat(e),
            };
            diags.push(
                Diagnostic::warning(Code::W0005, o.name.span, format!("`{old}` is the old spelling of `{new} {word}`"))
                    .with_label("deprecated; accepted for one release")
                    .with_help(format!("write `{new} {word} {args}`")),
            );
        }
        let Some((_, form, kinds, _)) = OPTIONS.iter().find(|(n, _, _, _)| *n == name) else {
            let mut d = Diagnostic::error(Code::E0313, o.name.span, format!("unknown stage option `{name}`")).with_label("not an option");
            d = d.with_help(
                suggest(name, OPTIONS.iter().map(|(n, _, _, _)| *n))
                    .unwrap_or_else(|| format!("options: {}", OPTIONS.iter().map(|(n, _, _, _)| *n).collect::<Vec<_>>().join(", "))),
            );
            diags.push(d);
            continue;
        };
        // `retrain every …` and `retrain when drift > …` are two options under one name.
        let drift_form = matches!(&o.value, OptionValue::Words(w) if matches!(w.first(), Some(OptionArg::Keyword(k)) if k.node == "when"));
        let name_seen: &str = if name == "retrain" && drift_form { "retrain when" } else { name };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name_seen && !REPEATABLE.contains(n)) {
            diags.push(
                Diagnostic::error(Code::E0316, o.name.span, format!("option `{name}` given twice"))
                    .with_label("set again here")
                    .with_secondary(*first, "first set here")
                    .with_help("keep one of them"),
            );
            continue;
        }
        seen.push((name_seen, o.name.span));
        if !kinds.is_empty() && !kinds.contains(&kind) {
            let owners: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            diags.push(
                Diagnostic::error(Code::E0315, o.name.span, format!("option `{name}` does not apply to a {kind} stage"))
                    .with_label(format!("only {} stages take `{name}`", owners.join(", ")))
                    .with_help("remove it, or move it to a stage of the right kind"),
            );
            continue;
        }
        let bad = || {
            Diagnostic::error(Code::E0314, o.span, format!("invalid `{name}` option"))
                .with_label("does not match the option's form")
                .with_help(format!("write `{form}`"))
        };
        let parsed = match &o.value {
            OptionValue::Expr(e) => match (name, &e.kind) {
                ("fallback", ExprKind::Name(n)) => Some(StageOpt::Fallback { stage: n.clone() }),
                _ => None,
            },
            OptionValue::Words(words) => {
                let mut ws: Vec<W> = words
                    .iter()
                    .map(|w| match w {
                        OptionArg::Keyword(k) => W::Kw(k.node.as_str()),
                        OptionArg::Lit(e) => match &e.kind {
                            ExprKind::Int(i) => W::Int(*i),
                            ExprKind::Float(f) => W::Num(*f),
                            ExprKind::Duration(d) => W::Dur(d.millis),
                            ExprKind::Bool(b) => W::Bool(*b),
                            ExprKind::Str(st) => W::Str(st.value.as_str()),
                            ExprKind::Name(n) => W::Name(n.as_str()),
                            _ => W::Other,
                        },
                    })
                    .collect();
                if let Some((_, _, word)) = deprecated {
                    ws.insert(0, W::Kw(word));
                }
                let count = |i: i64| u64::try_from(i).ok();
                match (name, ws.as_slice()) {
                    ("retry", [W::Int(n)]) => u32::try_from(*n).ok().map(|attempts| StageOpt::Retry { attempts, backoff_ms: 1000 }),
                    ("retry", [W::Int(n), W::Kw("backoff"), W::Dur(d)]) => {
                        u32::try_from(*n).ok().map(|attempts| StageOpt::Retry { attempts, backoff_ms: *d })
                    }
                    ("timeout", [W::Dur(d)]) if *d > 0 => Some(StageOpt::Timeout { ms: *d }),
                    ("retrain", [W::Kw("every"), W::Dur(d)]) if *d > 0 => Some(StageOpt::RetrainEvery { ms: *d }),
                    ("retrain", [W::Kw("every"), W::Int(n), W::Kw("samples")]) => {
                        count(*n).filter(|n| *n > 0).map(|samples| StageOpt::RetrainSamples { samples })
                    }
                    ("min_samples", [W::Int(n)]) => count(*n).map(|samples| StageOpt::MinSamples { samples }),
                    ("warm_start", [W::Bool(b)]) => Some(StageOpt::WarmStart { enabled: *b }),
                    ("pending", [W::Kw("for"), W::Dur(d)]) => Some(StageOpt::PendingFor { ms: *d }),
                    ("keep_firing", [W::Kw("for"), W::Dur(d)]) => Some(StageOpt::KeepFiringFor { ms: *d }),
                    ("resolve_timeout", [W::Dur(d)]) if *d > 0 => Some(StageOpt::ResolveTimeout { ms: *d }),
                    ("max_series", [W::Int(n)]) => count(*n).filter(|n| *n > 0).map(|count| StageOpt::MaxSeries { count }),
                    ("series_idle", [W::Dur(d)]) if *d > 0 => Some(StageOpt::SeriesIdle { ms: *d }),
                    ("retrain", [W::Kw("when"), W::Kw("drift"), W::Kw(">"), W::Num(x)]) if *x > 0.0 => {
                        Some(StageOpt::RetrainOnDrift { above: *x })
                    }
                    ("learn_from", [W::Kw("feedback")]) => Some(StageOpt::LearnFrom { feedback: true }),
                    ("learn_from", [W::Kw("nothing")]) => Some(StageOpt::LearnFrom { feedback: false }),
                    ("shadow", [W::Kw("for"), W::Dur(d)]) if *d > 0 => Some(StageOpt::Shadow { ms: *d }),
                    ("promote", [W::Kw("when"), W::Kw("better")]) => Some(StageOpt::Promote { when_better: true }),
                    ("promote", [W::Kw("manual")]) => Some(StageOpt::Promote { when_better: false }),
                    ("repeat", [W::Kw("every"), W::Dur(d)]) if *d > 0 => Some(StageOpt::Repeat { ms: *d }),
                    ("rate_limit", [W::Int(n), W::Kw("per"), W::Dur(d)]) if *d > 0 => {
                        count(*n).map(|count| StageOpt::RateLimit { count, per_ms: *d })
                    }
                    ("escalate", [W::Kw("after"), W::Dur(d), W::Kw("to"), W::Name(to)]) => {
                        Some(StageOpt::Escalate { after_ms: *d, to: (*to).to_owned() })
                    }
                    ("escalate", [W::Kw("after"), W::Dur(d), W::Kw("to"), W::Str(to)]) if !to.is_empty() => {
                        let after = words.get(1).map(word_text).unwrap_or_default();
                        let bare = is_name(to);
                        diags.push(
                            Diagnostic::warning(Code::W0005, o.span, "the escalation target is a stage: name it without quotes")
                                .with_label("deprecated; accepted for one release")
                                .with_help(if bare {
                                    format!("write `escalate after {after} to {to}`, as `fallback:` names its stage")
                                } else {
                                    format!("name a respond stage of this pipeline without quotes: `escalate after {after} to other_stage`")
                                }),
                        );
                        Some(StageOpt::Escalate { after_ms: *d, to: (*to).to_owned() })
                    }
                    ("maintenance", [W::Str(schedule), W::Kw("for"), W::Dur(d)]) if *d > 0 => match cron_error(schedule) {
                        None => Some(StageOpt::Maintenance { schedule: (*schedule).to_owned(), ms: *d }),
                        Some(why) => {
                            diags.push(
                                Diagnostic::error(Code::E0310, o.span, "invalid cron expression in a maintenance window")
                                    .with_label(format!("not a five-field schedule: {why}"))
                                    .with_help("write minute, hour, day of month, month and day of week (UTC), for example `maintenance \"0 2 * * SAT\" for 2h`"),
                            );
                            continue;
                        }
                    },
                    _ => None,
                }
            }
        };
        match parsed {
            Some(opt) => out.push((opt, o.span)),
            None => diags.push(bad()),
        }
    }
    out
}

/// An option word as written (canonically).
fn word_text(w: &OptionArg) -> String {
    match w {
        OptionArg::Keyword(k) => k.node.clone(),
        OptionArg::Lit(e) => crate::syntax::print::flat(e),
    }
}

/// Whether `s` could be written as a bare stage name.
fn is_name(s: &str) -> bool {
    crate::syntax::print::is_bare_name(s)
}

/// Why a five-field cron schedule is invalid, or None.
pub fn cron_error(schedule: &str) -> Option<String> {
    let fields = schedule.split_whitespace().count();
    if fields != 5 {
        return Some(format!("{fields} fields"));
    }
    croner::parser::CronParser::new().parse(schedule).err().map(|e| e.to_string())
}
