//! Stage options: `{ retry 3 backoff 1s  timeout 10s  retrain every 6h  min_samples 2000 }`.
//!
//! Each option has a form, and some belong to one stage kind. Codes: E0313–E0316.

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
}

impl StageOpt {
    /// The option's name as written.
    pub fn name(&self) -> &'static str {
        match self {
            StageOpt::Retry { .. } => "retry",
            StageOpt::Timeout { .. } => "timeout",
            StageOpt::RetrainEvery { .. } | StageOpt::RetrainSamples { .. } => "retrain",
            StageOpt::MinSamples { .. } => "min_samples",
            StageOpt::WarmStart { .. } => "warm_start",
            StageOpt::Fallback { .. } => "fallback",
            StageOpt::PendingFor { .. } => "pending_for",
            StageOpt::KeepFiringFor { .. } => "keep_firing_for",
            StageOpt::Repeat { .. } => "repeat",
            StageOpt::RateLimit { .. } => "rate_limit",
        }
    }
}

/// The options, their forms, and the kinds they belong to (empty: every kind).
pub const OPTIONS: &[(&str, &str, &[StageKind])] = &[
    ("retry", "retry 3 backoff 1s", &[]),
    ("timeout", "timeout 10s", &[]),
    ("retrain", "retrain every 6h | retrain every 5000 samples", &[StageKind::Train]),
    ("min_samples", "min_samples 2000", &[StageKind::Train]),
    ("warm_start", "warm_start true", &[StageKind::Train]),
    ("fallback", "fallback: other_stage", &[StageKind::Predict]),
    ("pending_for", "pending_for 2m", &[StageKind::Respond]),
    ("keep_firing_for", "keep_firing_for 5m", &[StageKind::Respond]),
    ("repeat", "repeat every 4h", &[StageKind::Respond]),
    ("rate_limit", "rate_limit 10 per 1h", &[StageKind::Respond]),
];

enum W<'a> {
    Kw(&'a str),
    Int(i64),
    Dur(u64),
    Bool(bool),
    Other,
}

/// Validates the options of a stage of `kind`, reporting problems into `diags`.
pub fn check_options(opts: &[StageOption], kind: StageKind, diags: &mut Vec<Diagnostic>) -> Vec<(StageOpt, crate::source::Span)> {
    let mut out: Vec<(StageOpt, crate::source::Span)> = Vec::new();
    let mut seen: Vec<(&str, crate::source::Span)> = Vec::new();
    for o in opts {
        let name = o.name.node.as_str();
        let Some((_, form, kinds)) = OPTIONS.iter().find(|(n, _, _)| *n == name) else {
            let mut d = Diagnostic::error(Code::E0313, o.name.span, format!("unknown stage option `{name}`")).with_label("not an option");
            d = d.with_help(
                suggest(name, OPTIONS.iter().map(|(n, _, _)| *n))
                    .unwrap_or_else(|| format!("options: {}", OPTIONS.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", "))),
            );
            diags.push(d);
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            diags.push(
                Diagnostic::error(Code::E0316, o.name.span, format!("option `{name}` given twice"))
                    .with_label("set again here")
                    .with_secondary(*first, "first set here")
                    .with_help("keep one of them"),
            );
            continue;
        }
        seen.push((name, o.name.span));
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
                let ws: Vec<W> = words
                    .iter()
                    .map(|w| match w {
                        OptionArg::Keyword(k) => W::Kw(k.node.as_str()),
                        OptionArg::Lit(e) => match &e.kind {
                            ExprKind::Int(i) => W::Int(*i),
                            ExprKind::Duration(d) => W::Dur(d.millis),
                            ExprKind::Bool(b) => W::Bool(*b),
                            _ => W::Other,
                        },
                    })
                    .collect();
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
                    ("pending_for", [W::Dur(d)]) => Some(StageOpt::PendingFor { ms: *d }),
                    ("keep_firing_for", [W::Dur(d)]) => Some(StageOpt::KeepFiringFor { ms: *d }),
                    ("repeat", [W::Kw("every"), W::Dur(d)]) if *d > 0 => Some(StageOpt::Repeat { ms: *d }),
                    ("rate_limit", [W::Int(n), W::Kw("per"), W::Dur(d)]) if *d > 0 => {
                        count(*n).map(|count| StageOpt::RateLimit { count, per_ms: *d })
                    }
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
