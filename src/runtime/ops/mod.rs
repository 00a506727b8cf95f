//! The implementations of the built-in operators, and [`build`], which makes a stage's
//! [`Step`] from its planned node (parameters already evaluated and defaulted).

pub mod breach;
pub mod budget;
pub mod collect;
pub mod correlate;
pub mod learn;
pub mod logs;
pub mod predict;
pub mod preprocess;
pub mod respond;
pub mod tail;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::expr::{Condition, Template};
use crate::plan::StageNode;
use crate::runtime::Step;
use crate::value::{SecretRef, Value};

/// What building a stage needs besides its node.
#[derive(Clone)]
pub struct BuildEnv {
    pub pipeline: String,
    /// Relative paths in parameters are relative to the pipeline file's directory.
    pub base_dir: PathBuf,
    /// The state directory (`log` writes `outbox.jsonl` there).
    pub state_dir: Option<PathBuf>,
    pub client: reqwest::Client,
    /// The pipeline's webhook event queue, when it has an `on webhook` trigger.
    pub webhook_queue: Option<collect::EventQueue>,
    /// The content hash of the sources, recorded with every trained model.
    pub pipeline_version: String,
    /// Incidents, silences, channels and the outbox (a responder without a store when
    /// nothing is sent, as in replays).
    pub responder: std::sync::Arc<crate::respond::Responder>,
    /// Under `vigil run`: the model registry, and training on threads of its own. Without
    /// it (replay, eval) training runs inline and models live in memory.
    pub models: Option<learn::BackgroundEnv>,
    /// Under `vigil run`: file sources without `start_at` start at the end of a file they
    /// meet for the first time, not at its beginning.
    pub live: bool,
}

impl BuildEnv {
    /// An environment for running a pipeline outside the engine (`vigil replay`,
    /// `vigil eval`, `vigil test`): no state directory, no webhooks, models in memory with
    /// training inline.
    pub fn offline(pipeline: &str, base_dir: &std::path::Path, responder: std::sync::Arc<crate::respond::Responder>) -> BuildEnv {
        BuildEnv {
            pipeline: pipeline.to_owned(),
            base_dir: base_dir.to_path_buf(),
            state_dir: None,
            client: reqwest::Client::new(),
            webhook_queue: None,
            pipeline_version: String::new(),
            models: None,
            responder,
            live: false,
        }
    }
}

/// Why a stage could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("operator `{0}` is not implemented yet (it comes with {1})")]
    NotImplemented(&'static str, &'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Resolves a secret reference. The value is never logged.
///
/// # Errors
/// When the variable is unset or the file unreadable (naming the reference, not the value).
pub fn resolve_secret(s: &SecretRef) -> Result<String, BuildError> {
    match s {
        SecretRef::Env(name) => std::env::var(name).map_err(|_| BuildError::Invalid(format!("the secret {s} is not set"))),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| BuildError::Invalid(format!("cannot read the secret {s}: {e}"))),
    }
}

struct P<'a>(&'a BTreeMap<String, Value>);

impl P<'_> {
    fn get(&self, k: &str) -> &Value {
        self.0.get(k).unwrap_or(&Value::Null)
    }
    fn str(&self, k: &str) -> String {
        match self.get(k) {
            Value::Str(s) => s.clone(),
            _ => String::new(),
        }
    }
    fn f64(&self, k: &str) -> Option<f64> {
        match self.get(k) {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    fn int(&self, k: &str) -> i64 {
        match self.get(k) {
            Value::Int(i) => *i,
            Value::Float(f) => *f as i64,
            _ => 0,
        }
    }
    fn dur(&self, k: &str) -> Option<i64> {
        match self.get(k) {
            Value::Duration(ms) => Some(i64::try_from(*ms).unwrap_or(i64::MAX / 4)),
            _ => None,
        }
    }
    fn bool(&self, k: &str) -> bool {
        matches!(self.get(k), Value::Bool(true))
    }
    fn strs(&self, k: &str) -> Vec<String> {
        match self.get(k) {
            Value::List(items) => items.iter().filter_map(|v| if let Value::Str(s) = v { Some(s.clone()) } else { None }).collect(),
            _ => Vec::new(),
        }
    }
    fn map(&self, k: &str) -> Vec<(String, String)> {
        match self.get(k) {
            Value::Map(m) => m.iter().map(|(k, v)| (k.clone(), if let Value::Str(s) = v { s.clone() } else { v.to_source() })).collect(),
            _ => Vec::new(),
        }
    }
    fn cond(&self, k: &str) -> Result<Option<Condition>, BuildError> {
        match self.get(k) {
            Value::Condition(c) => Condition::parse(c).map(Some).map_err(BuildError::Invalid),
            _ => Ok(None),
        }
    }
    fn secret(&self, k: &str) -> Result<Option<String>, BuildError> {
        match self.get(k) {
            Value::Secret(s) => resolve_secret(s).map(Some),
            _ => Ok(None),
        }
    }
}

fn path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Builds the implementation of a planned stage.
///
/// # Errors
/// When the operator is not implemented yet, or a parameter cannot be used (a secret that
/// is not set, a selector that does not parse, a template with a syntax error).
pub fn build(node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
    use preprocess::*;
    let p = P(&node.params);
    let invalid = BuildError::Invalid;
    Ok(match node.operator {
        "csv" => Step::Source(Box::new(
            collect::CsvSource::new(
                path(&env.base_dir, &p.str("path")),
                p.str("timestamp_column"),
                p.strs("value_columns"),
                p.map("labels"),
            )
            .start_at(tail::StartAt::from_param(&p.str("start_at"), env.live)),
        )),
        "jsonl" => Step::Source(Box::new(
            collect::JsonlSource::new(
                path(&env.base_dir, &p.str("path")),
                p.str("timestamp_field"),
                p.str("value_field"),
                p.strs("label_fields"),
            )
            .start_at(tail::StartAt::from_param(&p.str("start_at"), env.live)),
        )),
        "synthetic" => Step::Source(Box::new(collect::SyntheticSource::new(collect::SyntheticConfig {
            seed: p.int("seed") as u64,
            series: p.int("series").clamp(1, 100_000) as usize,
            interval_ms: p.dur("interval").unwrap_or(1000).max(1),
            baseline: p.f64("baseline").unwrap_or(50.0),
            noise: p.f64("noise").unwrap_or(2.0),
            period_ms: p.dur("period").unwrap_or(3_600_000).max(1),
            amplitude: p.f64("amplitude").unwrap_or(10.0),
            incident_every_ms: p.dur("incident_every").unwrap_or(600_000).max(1),
            incident_length_ms: p.dur("incident_length").unwrap_or(60_000).max(1),
            incident_size: p.f64("incident_size").unwrap_or(8.0),
            speedup: p.f64("speedup").unwrap_or(1.0).max(0.001),
        }))),
        "prometheus.scrape" => {
            let client = client_with_timeout(env, p.dur("timeout"))?;
            Step::Source(Box::new(collect::ScrapeSource::new(p.str("url"), p.strs("metrics"), p.map("labels"), client)))
        }
        "prometheus.query_range" => {
            let client = client_with_timeout(env, p.dur("timeout"))?;
            let bearer = p.secret("bearer_token")?;
            Step::Source(Box::new(collect::QueryRangeSource::new(
                p.str("url"),
                p.str("query"),
                p.dur("step").unwrap_or(30_000),
                p.dur("lookback").unwrap_or(3_600_000),
                bearer,
                client,
            )))
        }
        "webhook_events" => {
            let queue = env.webhook_queue.clone().ok_or_else(|| invalid("webhook_events needs an `on webhook` trigger".into()))?;
            // The route checks these on every request: a secret that does not resolve
            // fails the build (and so the reload) rather than leaving the path open.
            p.secret("token")?;
            p.secret("hmac")?;
            Step::Source(Box::new(collect::WebhookSource { queue }))
        }
        "logs.file" | "logs.jsonl" => {
            let format = if node.operator == "logs.file" {
                let header = crate::logs::HeaderFormat::new(&p.str("header"))
                    .map_err(|e| invalid(format!("`header` is not a valid header format: {}", e.0)))?;
                logs::Format::Header { format: header, from_header: p.str("timestamp") == "header" }
            } else {
                let ts = p.str("timestamp_field");
                logs::Format::Json {
                    message: p.str("message"),
                    label_fields: p.strs("label_fields"),
                    timestamp_field: (!ts.is_empty()).then_some(ts),
                }
            };
            let continuation = match p.str("continuation").as_str() {
                "" => None,
                c => Some(regex::Regex::new(c).map_err(|e| invalid(format!("`continuation` is not a valid regular expression: {e}")))?),
            };
            Step::Source(Box::new(logs::LogSource::new(logs::LogConfig {
                path: path(&env.base_dir, &p.str("path")),
                format,
                continuation,
                continuation_wait: p.dur("continuation_wait").unwrap_or(5_000),
                max_line: usize::try_from(p.int("max_line")).unwrap_or(logs::DEFAULT_MAX_LINE).clamp(64, 64 << 20),
                labels: p.map("labels"),
                start_at: tail::StartAt::from_param(&p.str("start_at"), env.live),
                max_read: usize::try_from(p.int("max_read")).unwrap_or(logs::DEFAULT_MAX_READ).clamp(1 << 16, tail::MAX_READ),
            })))
        }
        "templates" => {
            let masks = p
                .strs("masks")
                .iter()
                .map(|m| regex::Regex::new(m).map_err(|e| invalid(format!("the mask `{m}` is not a valid regular expression: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let cfg = crate::logs::Config {
                max_templates: usize::try_from(p.int("max_templates")).unwrap_or(10_000).max(8),
                masks,
                ..Default::default()
            };
            Step::Op(Box::new(logs::Templates::new(p.str("field"), cfg)))
        }
        "correlate" => {
            let file = match p.str("topology").as_str() {
                "" => None,
                f => {
                    let path = path(&env.base_dir, f);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| invalid(format!("cannot read the topology `{}`: {e}", path.display())))?;
                    Some((path, text))
                }
            };
            let topology = correlate::topology(file.as_ref().map(|(p, t)| (p.as_path(), t.clone())), &p.strs("edges")).map_err(invalid)?;
            let config = crate::correlate::Config {
                window_ms: p.dur("window").unwrap_or(300_000),
                max_span_ms: p.dur("max_span").unwrap_or(3_600_000),
                by: p.strs("by"),
                topology,
                hops: usize::try_from(p.int("hops")).unwrap_or(1),
                service_label: p.str("service_label"),
                similarity: p.f64("similarity"),
                max_open: usize::try_from(p.int("max_open")).unwrap_or(100_000),
                max_members: usize::try_from(p.int("max_members")).unwrap_or(10_000),
                ..crate::correlate::Config::default()
            };
            Step::Op(Box::new(correlate::Correlate::new(node.key.0.clone(), config, env.responder.clone())))
        }
        "new_templates" => Step::Op(Box::new(logs::NewTemplates::new(p.dur("after").unwrap_or(3_600_000)))),
        "resample" => Step::Op(Box::new(Resample::new(p.dur("every").unwrap_or(60_000), Agg::parse(&p.str("agg")).unwrap_or(Agg::Mean)))),
        "fill" => {
            let method = match p.str("method").as_str() {
                "linear" => FillMethod::Linear,
                "zero" => FillMethod::Zero,
                "value" => FillMethod::Value(p.f64("value").ok_or_else(|| invalid("fill(method: \"value\") needs `value`".into()))?),
                _ => FillMethod::Previous,
            };
            Step::Op(Box::new(Fill::new(method, p.dur("max_gap"))))
        }
        "normalize" => {
            let method = match p.str("method").as_str() {
                "minmax" => NormMethod::MinMax,
                "robust" => NormMethod::Robust,
                _ => NormMethod::Z,
            };
            Step::Op(Box::new(Normalize::new(method, p.dur("window"))))
        }
        "diff" => Step::Op(Box::new(Diff::new(p.int("lag").max(1) as usize, p.bool("rate")))),
        "rolling" => Step::Op(Box::new(Rolling::new(p.dur("window").unwrap_or(3_600_000), p.strs("stats")))),
        "window" => Step::Op(Box::new(Window::new(p.int("size").clamp(1, 1 << 20) as usize, p.int("stride").max(1) as usize))),
        "select" => Step::Op(Box::new(Select {
            matchers: parse_selector(&p.str("match")).map_err(|e| invalid(format!("invalid selector `{}`: {e}", p.str("match"))))?,
        })),
        "aggregate" => Step::Op(Box::new(Aggregate::new(p.strs("by"), Agg::parse(&p.str("op")).unwrap_or(Agg::Sum), p.dur("every")))),
        "zscore" => Step::Op(Box::new(predict::ZScore::new(
            p.dur("window").unwrap_or(3_600_000),
            p.str("method") != "standard",
            p.f64("threshold").unwrap_or(4.0),
            p.int("min_samples").max(1) as usize,
        ))),
        "novelty" => Step::Op(Box::new(predict::Novelty::new(
            p.dur("suppress").unwrap_or(43_200_000),
            p.int("memory").clamp(100, 10_000_000) as usize,
            p.f64("threshold").unwrap_or(0.79),
        ))),
        "threshold" => Step::Op(Box::new(predict::Threshold::new(p.f64("above"), p.f64("below"), p.dur("for").unwrap_or(0)))),
        "log" | "email" | "webhook" | "slack" | "pagerduty" | "alertmanager" | "exec" => build_respond(node, env, &p)?,
        "autoencoder" | "forecaster" | "baseline" => {
            let spec = crate::learn::Spec::from_params(node.operator, &node.params).map_err(invalid)?;
            let policy = learn::Policy::from_options(&node.options, &spec);
            let background = env.models.as_ref().map(|m| learn::Background { registry: m.registry.clone(), handle: m.handle.clone() });
            let cx = learn::Context {
                pipeline: env.pipeline.clone(),
                feedback: policy.learn_from_feedback.then(|| env.responder.feedback.clone()),
                monitor: env.models.as_ref().map(|m| m.monitor.clone()),
            };
            Step::Op(Box::new(learn::Train::new(
                spec,
                policy,
                cx,
                node.key.0.clone(),
                node.fingerprint.0.clone(),
                env.pipeline_version.clone(),
                background,
            )))
        }
        "score" => Step::Op(Box::new(learn::ModelScore::new(
            learn::Mode::Score { threshold: p.f64("threshold").unwrap_or(0.99), suppress_ms: p.dur("suppress").unwrap_or(0) },
            p.int("history").max(10) as usize,
            Some((env.pipeline.clone(), env.responder.feedback.clone())),
        ))),
        "forecast" => Step::Op(Box::new(learn::ModelScore::new(
            learn::Mode::Forecast { step: p.int("horizon").max(1) as usize, interval: p.f64("interval").unwrap_or(0.95).clamp(0.0, 1.0) },
            1000,
            Some((env.pipeline.clone(), env.responder.feedback.clone())),
        ))),
        "forecast_breach" => Step::Op(Box::new(breach::ForecastBreach::new(
            p.f64("above").ok_or_else(|| invalid("forecast_breach needs `above`".into()))?,
            p.dur("within").unwrap_or(14_400_000),
            p.dur("window").unwrap_or(21_600_000),
            p.f64("sigmas").unwrap_or(1.64),
        ))),
        "drift" => Step::Op(Box::new(learn::DriftScores { threshold: p.f64("threshold").unwrap_or(0.25) })),
        "budget" => Step::Op(Box::new(budget::Budget::new(
            p.f64("alarms").unwrap_or(1.0),
            p.dur("per").unwrap_or(86_400_000).max(1),
            p.dur("horizon").unwrap_or(604_800_000).max(1),
            Some((env.pipeline.clone(), env.responder.feedback.clone())),
        ))),
        "ensemble" => Step::Op(Box::new(learn::Ensemble { mean: p.str("op") == "mean", threshold: p.f64("threshold").unwrap_or(0.99) })),
        other => return Err(invalid(format!("unknown operator `{other}`"))),
    })
}

fn client_with_timeout(env: &BuildEnv, timeout: Option<i64>) -> Result<reqwest::Client, BuildError> {
    match timeout {
        None => Ok(env.client.clone()),
        Some(ms) => reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(ms.max(1) as u64))
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Invalid(format!("cannot make an HTTP client: {e}"))),
    }
}

/// Builds a respond stage: its channel (secrets resolved now) and its policy.
fn build_respond(node: &StageNode, env: &BuildEnv, p: &P<'_>) -> Result<Step, BuildError> {
    use crate::respond::channels::{self, Channel, Kind};
    let invalid = BuildError::Invalid;
    let required = |name: &str, v: Option<String>| v.ok_or_else(|| invalid(format!("`{name}` is required")));
    let http_url = |u: String| -> Result<String, BuildError> {
        match reqwest::Url::parse(&u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(u),
            _ => Err(invalid(format!("`{u}` is not an http:// or https:// URL"))),
        }
    };
    let mut policy = respond::Policy::from_options(&node.options);
    let default_subject = "[vigil] {{ incident.status }}: {{ incident.key }}";
    // The message each operator renders (a subject, a Slack text, a log line).
    let subject = match node.operator {
        "log" => p.str("message"),
        "email" => p.str("subject"),
        "slack" => match p.str("text").as_str() {
            "" => "{{ incident.status }}: {{ incident.key }} (score {{ incident.score }})".to_owned(),
            t => t.to_owned(),
        },
        _ => default_subject.to_owned(),
    };
    if node.operator == "alertmanager" {
        policy.resend_ms = p.dur("resend");
    }
    let kind = match node.operator {
        // Under `vigil test` nothing is sent and no secret is read: the channel only renders.
        _ if env.responder.is_capturing() => Kind::Log { outbox: None },
        "log" => Kind::Log { outbox: env.state_dir.as_ref().map(|d| d.join("outbox.jsonl")) },
        "email" => {
            let url = required("smtp", p.secret("smtp")?)?;
            let tls = match p.str("tls").as_str() {
                "" => "starttls".to_owned(),
                t => t.to_owned(),
            };
            let from = match p.str("from").as_str() {
                "" => "vigil@localhost".to_owned(),
                f => f.to_owned(),
            };
            let ca = match p.str("ca").as_str() {
                "" => None,
                file => {
                    let file = path(&env.base_dir, file);
                    Some(std::fs::read(&file).map_err(|e| invalid(format!("cannot read the `ca` file {}: {e}", file.display())))?)
                }
            };
            let smtp =
                channels::smtp(&url, &tls, &from, &p.strs("to"), ca.as_deref(), std::time::Duration::from_secs(30)).map_err(invalid)?;
            Kind::Email(Box::new(smtp))
        }
        "webhook" => {
            let client = client_with_timeout(env, p.dur("timeout"))?;
            Kind::Webhook { url: http_url(p.str("url"))?, secret: p.secret("secret")?, client }
        }
        "slack" => {
            let url = required("url", p.secret("url")?)?;
            let url = http_url(url).map_err(|_| invalid("the Slack webhook secret is not an http(s) URL".into()))?;
            Kind::Slack { url, client: env.client.clone() }
        }
        "pagerduty" => {
            let routing_key = required("routing_key", p.secret("routing_key")?)?;
            let url = http_url(p.str("url"))?;
            Kind::PagerDuty { routing_key, severity: p.str("severity"), url, client: env.client.clone() }
        }
        "alertmanager" => {
            let annotations = p
                .map("annotations")
                .into_iter()
                .map(|(k, v)| Template::new(&v).map(|t| (k, t)).map_err(invalid))
                .collect::<Result<Vec<_>, _>>()?;
            let url = http_url(p.str("url"))?;
            Kind::Alertmanager { url, labels: p.map("labels").into_iter().collect(), annotations, client: env.client.clone() }
        }
        "exec" => {
            let argv = p.strs("command").iter().map(|a| Template::new(a).map_err(invalid)).collect::<Result<Vec<_>, _>>()?;
            if argv.is_empty() {
                return Err(invalid("`command` is empty: give the program and its arguments".into()));
            }
            let timeout = std::time::Duration::from_millis(p.dur("timeout").unwrap_or(30_000).max(1) as u64);
            let allow = match p.str("allow").as_str() {
                "" => crate::respond::channels::DEFAULT_EXEC_ALLOW.to_owned(),
                a => a.to_owned(),
            };
            let allow = regex::Regex::new(&allow).map_err(|e| invalid(format!("`allow` is not a valid regular expression: {e}")))?;
            Kind::Exec(Box::new(crate::respond::channels::Exec {
                argv,
                timeout,
                env: p.strs("env"),
                allow,
                retry_on_crash: p.bool("retry_on_crash"),
            }))
        }
        other => return Err(invalid(format!("`{other}` is not a respond operator"))),
    };
    let body = match p.str("body").as_str() {
        "" => None,
        b => Some(Template::new(b).map_err(invalid)?),
    };
    let channel = Channel { kind, subject: Template::new(&subject).map_err(invalid)?, body };
    Ok(Step::Op(Box::new(respond::Respond::new(
        env.pipeline.clone(),
        node.key.0.clone(),
        p.cond("when")?,
        Template::new(&p.str("dedup")).map_err(invalid)?,
        p.strs("group_by"),
        policy,
        channel,
        env.responder.clone(),
    ))))
}
