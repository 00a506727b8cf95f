//! `prometheus.query_range`: a PromQL range query. Environment: the `bearer_token` secret
//! not set, an HTTP client that cannot be made.

use crate::operators::prelude::*;
use crate::operators::rules;
use crate::runtime::ops::{client_with_timeout, collect, resolve_secret};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "prometheus.query_range",
    kind: StageKind::Collect,
    summary: "Runs a PromQL range query against the Prometheus HTTP API.",
    doc: "Calls `GET /api/v1/query_range` with the query, from the cursor (or `lookback` ago on the first tick) to now, at `step` resolution. Each result series becomes a series; values arrive as strings and are parsed. Checked when the stage starts, not by `vigil check`: the `bearer_token` secret must be set.",
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
};

/// The parameters of `prometheus.query_range`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub url: String,
    pub query: String,
    pub step: Ms,
    pub lookback: Ms,
    pub timeout: Ms,
    pub bearer_token: Option<SecretRef>,
}

/// The `prometheus.query_range` operator.
pub struct QueryRange;

impl Definition for QueryRange {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        rules::http_url("url", &p.url, &mut out);
        out
    }

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let client = client_with_timeout(env, Some(p.timeout.i64()))?;
        let bearer = p.bearer_token.as_ref().map(resolve_secret).transpose()?;
        Ok(Step::Source(Box::new(collect::QueryRangeSource::new(p.url, p.query, p.step.i64(), p.lookback.i64(), bearer, client))))
    }
}
