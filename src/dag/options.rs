//! Stage options as the plan carries them ([`StageOpt`]), and the table of every option
//! (its forms, the stage kinds it belongs to, what it does) from which the checker's
//! messages and `docs/operators.md` are made. The checker validates them
//! (`crate::check::options`).

use crate::syntax::ast::StageKind;

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
        "A series that has sent no data for this long no longer keeps an incident firing; an incident none of whose series report resolves (audited: `no data from ... for ...`). Without it an incident waits for data that clears it. Checked whenever the stage runs: a tick whose source fails does not reach it. Follows the wall clock, so not under `vigil test`. Not on a stage fed incidents (routing, E0315): its incidents resolve with the upstream ones, so give `resolve_timeout` to the upstream stage.",
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
