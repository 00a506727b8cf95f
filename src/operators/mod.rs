//! The built-in operators, one file each: `src/operators/<kind>/<name>.rs` holds an
//! operator's [`OperatorSpec`] (signature, defaults, ranges, documentation, example), its
//! typed parameters, its [`Definition::validate`] and its [`Definition::build`].
//!
//! [`OPERATORS`] is the registry: the checker resolves calls through it, the planner calls
//! [`check`] on every node it plans (so that `vigil check` refuses what building would),
//! the engine calls [`build`], and `docs/operators.md` is generated from the specs.
//!
//! Adding an operator: write its file (copy a neighbour), declare it in its kind's module
//! below and add one line to [`OPERATORS`]; then regenerate the docs
//! (`VIGIL_BLESS=1 cargo test --test docs`).
//!
//! Check ⇔ build: `validate` makes every refusal that does not depend on the environment
//! (regular expressions, selectors, templates, URLs, parameters needed together, sizes);
//! `build` adds only the environment's (a secret not set, a file not readable, a webhook
//! trigger missing), which each operator's doc lists. [`build`] runs `validate` first.
//! The implementations of the stages themselves live in `src/runtime/ops/`.

mod docs;
pub mod params;

use std::collections::BTreeMap;

use crate::dag::StageNode;
use crate::runtime::ops::{BuildEnv, BuildError};
use crate::runtime::Step;
use crate::stages::OperatorSpec;
use crate::value::Value;

pub use docs::{operator_markdown, operators_markdown, spec, specs};
pub use params::{Labels, Ms};

/// What an operator file defines.
pub trait Definition {
    /// The typed parameters, deserialised from the planned node's parameter map (already
    /// evaluated, checked against the spec and defaulted: no defaults here).
    type Params: serde::de::DeserializeOwned;

    /// The operator's signature and documentation.
    const SPEC: &'static OperatorSpec;

    /// Every refusal that does not depend on the environment; empty when the parameters
    /// are fine.
    fn validate(_params: &Self::Params) -> Vec<Refusal> {
        Vec::new()
    }

    /// Builds the stage from valid parameters.
    ///
    /// # Errors
    /// Only what depends on the environment (secrets, files, triggers).
    fn build(params: Self::Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError>;
}

/// A parameter value an operator refuses: which parameter, why, and how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// The parameter to point at.
    pub param: &'static str,
    pub why: String,
    pub help: String,
}

impl Refusal {
    /// A refusal of `param`.
    pub fn new(param: &'static str, why: impl Into<String>, help: impl Into<String>) -> Refusal {
        Refusal { param, why: why.into(), help: help.into() }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.param, self.why)
    }
}

/// One registered operator: its spec and its type-erased check and build.
pub struct Operator {
    pub spec: &'static OperatorSpec,
    check: fn(&BTreeMap<String, Value>) -> Vec<Refusal>,
    build: fn(&StageNode, &BuildEnv) -> Result<Step, BuildError>,
}

impl Operator {
    /// The registry entry of an operator file's [`Definition`].
    pub const fn of<D: Definition>() -> Operator {
        Operator { spec: D::SPEC, check: check_params::<D>, build: build_node::<D> }
    }

    /// Every refusal of these parameters (evaluated and defaulted, as the planner makes
    /// them) that does not depend on the environment.
    pub fn check(&self, params: &BTreeMap<String, Value>) -> Vec<Refusal> {
        (self.check)(params)
    }

    /// Builds a planned node of this operator.
    ///
    /// # Errors
    /// What [`Operator::check`] refuses, and what the environment does not provide.
    pub fn build(&self, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        (self.build)(node, env)
    }
}

fn typed<D: Definition>(params: &BTreeMap<String, Value>) -> Result<D::Params, Vec<Refusal>> {
    // The spec's own rules (ranges, choices) first: the typed code relies on them.
    let mut wrong = Vec::new();
    for spec in D::SPEC.all_params() {
        if let Some(why) = params.get(spec.name).and_then(|v| crate::value::validate(v, spec)) {
            wrong.push(Refusal::new(spec.name, why, spec.doc));
        }
    }
    if !wrong.is_empty() {
        return Err(wrong);
    }
    params::from_map::<D::Params>(params).map_err(|e| {
        vec![Refusal::new("", format!("the parameters do not fit `{}`: {e}", D::SPEC.name), "this is a bug in vigil: please report it")]
    })
}

fn check_params<D: Definition>(params: &BTreeMap<String, Value>) -> Vec<Refusal> {
    match typed::<D>(params) {
        Ok(p) => D::validate(&p),
        Err(wrong) => wrong,
    }
}

fn build_node<D: Definition>(node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
    let p = typed::<D>(&node.params).map_err(refused)?;
    let wrong = D::validate(&p);
    if !wrong.is_empty() {
        return Err(refused(wrong));
    }
    D::build(p, node, env)
}

fn refused(wrong: Vec<Refusal>) -> BuildError {
    BuildError::Invalid(wrong.iter().map(Refusal::to_string).collect::<Vec<_>>().join("; "))
}

/// What operator files use.
pub(crate) mod prelude {
    pub(crate) use super::params::{Labels, Ms};
    pub(crate) use super::{Definition, Refusal};
    pub(crate) use crate::dag::StageNode;
    pub(crate) use crate::runtime::ops::{BuildEnv, BuildError};
    pub(crate) use crate::runtime::Step;
    pub(crate) use crate::stages::spec::*;
    pub(crate) use crate::stages::Default::*;
    pub(crate) use crate::stages::{OperatorSpec, Output, ParamSpec, Scalar, Ty};
    pub(crate) use crate::syntax::ast::StageKind;
    pub(crate) use crate::value::SecretRef;
    pub(crate) use serde::Deserialize;
}

/// Sources: they read or receive data.
pub mod collect {
    pub mod csv;
    pub mod jsonl;
    pub mod logs_file;
    pub mod logs_jsonl;
    pub mod prometheus_query_range;
    pub mod prometheus_scrape;
    pub mod synthetic;
    pub mod webhook_events;
}

/// Transformations of series and events.
pub mod preprocess {
    pub mod aggregate;
    pub mod diff;
    pub mod fill;
    pub mod normalize;
    pub mod resample;
    pub mod rolling;
    pub mod select;
    pub mod templates;
    pub mod window;
}

/// Models trained from each series' history.
pub mod train {
    pub mod autoencoder;
    pub mod baseline;
    pub mod forecaster;
}

/// Detectors and combinators that emit scores.
/// What `score`'s and `forecast`'s `calibration` parameter does (each adds what its scores
/// then mean for its threshold).
macro_rules! calibration_doc {
    () => {
        "How errors become scores: `tail`, each error's tail probability against the version's recent errors; `likelihood`, the residual's size relative to the series' recent range (0.1%–99.9% quantiles of its last 8 064 values) times its evidence against the recent level of such sizes (the `novelty` detector's calibration: a spike on a series whose range is made of spikes scores low). `novelty`, the residuals `value − expected` (in the series' units, across versions) as a series scored by the `novelty` detector: how new each residual is against the last 28 days of residuals, at this time of day and week and in its short shape, each weighed by its likelihood; it scores nothing during its first two days, and its event-level rule replaces `suppress`'s (a new report within `suppress` needs a higher score and twice the odds); memory per series as the `novelty` operator's."
    };
}

pub mod predict {
    pub mod budget;
    pub mod correlate;
    pub mod drift;
    pub mod ensemble;
    pub mod forecast;
    pub mod forecast_breach;
    pub mod new_templates;
    pub mod novelty;
    pub mod score;
    pub mod threshold;
    pub mod zscore;
}

/// Incidents and notifications.
pub mod respond {
    pub mod alertmanager;
    pub mod common;
    pub mod email;
    pub mod exec;
    pub mod log;
    pub mod pagerduty;
    pub mod slack;
    pub mod webhook;
}

/// Every built-in operator, in the order of the docs.
pub static OPERATORS: &[Operator] = &[
    Operator::of::<collect::csv::Csv>(),
    Operator::of::<collect::jsonl::Jsonl>(),
    Operator::of::<collect::synthetic::Synthetic>(),
    Operator::of::<collect::prometheus_scrape::Scrape>(),
    Operator::of::<collect::prometheus_query_range::QueryRange>(),
    Operator::of::<collect::webhook_events::WebhookEvents>(),
    Operator::of::<collect::logs_file::LogsFile>(),
    Operator::of::<collect::logs_jsonl::LogsJsonl>(),
    Operator::of::<preprocess::resample::Resample>(),
    Operator::of::<preprocess::fill::Fill>(),
    Operator::of::<preprocess::normalize::Normalize>(),
    Operator::of::<preprocess::diff::Diff>(),
    Operator::of::<preprocess::rolling::Rolling>(),
    Operator::of::<preprocess::window::Window>(),
    Operator::of::<preprocess::select::Select>(),
    Operator::of::<preprocess::aggregate::Aggregate>(),
    Operator::of::<preprocess::templates::Templates>(),
    Operator::of::<train::autoencoder::Autoencoder>(),
    Operator::of::<train::forecaster::Forecaster>(),
    Operator::of::<train::baseline::Baseline>(),
    Operator::of::<predict::score::Score>(),
    Operator::of::<predict::novelty::Novelty>(),
    Operator::of::<predict::ensemble::Ensemble>(),
    Operator::of::<predict::zscore::ZScore>(),
    Operator::of::<predict::threshold::Threshold>(),
    Operator::of::<predict::correlate::Correlate>(),
    Operator::of::<predict::new_templates::NewTemplates>(),
    Operator::of::<predict::forecast::Forecast>(),
    Operator::of::<predict::drift::Drift>(),
    Operator::of::<predict::forecast_breach::ForecastBreach>(),
    Operator::of::<predict::budget::Budget>(),
    Operator::of::<respond::email::Email>(),
    Operator::of::<respond::webhook::Webhook>(),
    Operator::of::<respond::slack::Slack>(),
    Operator::of::<respond::pagerduty::PagerDuty>(),
    Operator::of::<respond::alertmanager::Alertmanager>(),
    Operator::of::<respond::exec::Exec>(),
    Operator::of::<respond::log::Log>(),
];

/// The operator called `name`.
pub fn lookup(name: &str) -> Option<&'static Operator> {
    OPERATORS.iter().find(|o| o.spec.name == name)
}

/// Every refusal of a node's parameters that does not depend on the environment (none for
/// an unknown operator: the checker has refused it).
pub fn check(operator: &str, params: &BTreeMap<String, Value>) -> Vec<Refusal> {
    lookup(operator).map(|o| o.check(params)).unwrap_or_default()
}

/// Builds the implementation of a planned stage.
///
/// # Errors
/// When a parameter is refused (as [`check`] would) or the environment lacks something
/// (a secret that is not set, a file that cannot be read, a webhook trigger).
pub fn build(node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
    match lookup(node.operator) {
        Some(op) => op.build(node, env),
        None => Err(BuildError::Invalid(format!("unknown operator `{}`", node.operator))),
    }
}

/// Shared validation helpers.
pub(crate) mod rules {
    use super::Refusal;

    /// A regular expression that must compile.
    pub fn regex(param: &'static str, re: &str, out: &mut Vec<Refusal>) {
        if let Err(e) = regex::Regex::new(re) {
            out.push(Refusal::new(
                param,
                format!("`{re}` is not a valid regular expression: {}", one_line(&e.to_string())),
                "fix the regular expression (Rust `regex` syntax)",
            ));
        }
    }

    /// An error on one line: the regex crate's parse errors draw the pattern and a caret
    /// over several lines, of which the last says what is wrong.
    pub fn one_line(message: &str) -> String {
        match message.split_once("regex parse error:") {
            Some((before, after)) => {
                let what = after.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("");
                format!("{before}{}", what.trim_start_matches("error: "))
            }
            None => message.to_owned(),
        }
    }

    /// A notification template that must compile and use only the variables an incident
    /// gives (an unknown one would render empty: a typo).
    pub fn template(param: &'static str, source: &str, out: &mut Vec<Refusal>) {
        let found = memo(Check::Template, source, || {
            let mut found = Vec::new();
            if let Err(e) = crate::expr::Template::new(source) {
                found.push((e, TEMPLATE_SYNTAX_HELP.to_owned()));
                return found;
            }
            for why in crate::respond::templates::problems(source) {
                let (label, help) = why.split_once(": ").unwrap_or((why.as_str(), ""));
                found.push((label.to_owned(), help.to_owned()));
            }
            found
        });
        out.extend(found.into_iter().map(|(why, help)| Refusal::new(param, why, help)));
    }

    /// A template that must compile (whatever its variables); whether it does.
    pub fn template_syntax(param: &'static str, source: &str, out: &mut Vec<Refusal>) -> bool {
        let found = memo(Check::TemplateSyntax, source, || match crate::expr::Template::new(source) {
            Ok(_) => Vec::new(),
            Err(e) => vec![(e, TEMPLATE_SYNTAX_HELP.to_owned())],
        });
        let ok = found.is_empty();
        out.extend(found.into_iter().map(|(why, help)| Refusal::new(param, why, help)));
        ok
    }

    const TEMPLATE_SYNTAX_HELP: &str = "fix the template's syntax (minijinja: `{{ incident.key }}`)";

    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Check {
        Template,
        TemplateSyntax,
    }

    /// What a check of this text found (why, help), remembered per thread: the planner
    /// validates every node, and thousands of stages share a few templates and
    /// conditions (a stage kind's defaults, a stdlib wrapper's), which would otherwise be
    /// compiled again for each.
    fn memo(kind: Check, text: &str, run: impl FnOnce() -> Vec<(String, String)>) -> Vec<(String, String)> {
        type Memo = std::collections::HashMap<(Check, String), Vec<(String, String)>>;
        thread_local! {
            static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::new());
        }
        /// Texts remembered per thread at most; then the memo starts over.
        const CAPACITY: usize = 4096;
        if let Some(found) = MEMO.with(|m| m.borrow().get(&(kind, text.to_owned())).cloned()) {
            return found;
        }
        let found = run();
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= CAPACITY {
                m.clear();
            }
            m.insert((kind, text.to_owned()), found.clone());
        });
        found
    }

    /// An http:// or https:// URL.
    pub fn http_url(param: &'static str, url: &str, out: &mut Vec<Refusal>) {
        if !is_http_url(url) {
            out.push(Refusal::new(
                param,
                format!("`{url}` is not an http:// or https:// URL"),
                "write the full URL, such as `https://host:port/path`",
            ));
        }
    }

    /// Whether `url` parses as an http:// or https:// URL.
    pub fn is_http_url(url: &str) -> bool {
        reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    }
}
