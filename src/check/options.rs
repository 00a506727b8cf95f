//! Stage options: `{ retry 3 backoff 1s  timeout 10s  retrain every 6h  min_samples 2000 }`.
//!
//! Each option has a form, and some belong to one stage kind. Codes: E0313–E0316, and
//! W0005 for an older spelling still accepted ([`DEPRECATED`], a string escalation target).

use crate::diagnostic::{suggest, Code, Diagnostic};
use crate::syntax::ast::{ExprKind, OptionArg, OptionValue, StageKind, StageOption};

pub use crate::dag::options::{options_markdown, StageOpt, OPTIONS};

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
