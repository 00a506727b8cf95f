//! `prometheus.scrape`: a Prometheus text exposition endpoint. Environment: an HTTP client
//! that cannot be made.

use crate::operators::prelude::*;
use crate::operators::rules;
use crate::runtime::ops::{client_with_timeout, collect};

pub static SPEC: OperatorSpec = OperatorSpec {
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
};

/// The parameters of `prometheus.scrape`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub url: String,
    pub metrics: Vec<String>,
    pub labels: Option<Labels>,
    pub timeout: Ms,
}

/// The `prometheus.scrape` operator.
pub struct Scrape;

impl Definition for Scrape {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        rules::http_url("url", &p.url, &mut out);
        out
    }

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let client = client_with_timeout(env, Some(p.timeout.i64()))?;
        Ok(Step::Source(Box::new(collect::ScrapeSource::new(p.url, p.metrics, p.labels.unwrap_or_default().0, client))))
    }
}
