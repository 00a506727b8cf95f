//! prometheus.scrape and prometheus.query_range against a real Prometheus server (Debian
//! package `prometheus`), started on a free port with a configuration that scrapes
//! itself.

mod common;

use std::time::Duration;

use common::*;
use vigil::data::Data;
use vigil::runtime::ops::collect::{QueryRangeSource, ScrapeSource};
use vigil::runtime::{OpCtx, Source};

fn series(d: Data) -> std::sync::Arc<vigil::data::SeriesData> {
    match d {
        Data::Series(s) => s,
        other => panic!("expected Series, got {}", other.kind()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_a_real_prometheus_exposition_with_histograms() {
    let prom = tokio::task::spawn_blocking(start_prometheus).await.unwrap();
    let mut src = ScrapeSource::new(
        format!("http://127.0.0.1:{}/metrics", prom.port),
        vec![],
        vec![("env".into(), "test".into())],
        reqwest::Client::new(),
    );
    let mut ctx = OpCtx::new(vigil::time::now_ms());
    let data = series(src.collect(&mut ctx).await.unwrap());
    assert!(data.series.len() > 50, "a Prometheus exposes hundreds of series, got {}", data.series.len());
    assert_eq!(ctx.skipped_total(), 0, "a real exposition parses without skipping: {:?}", ctx.skipped);
    // Histograms arrive as their _bucket (with `le`, including +Inf), _sum and _count.
    let buckets: Vec<_> = data.series.iter().filter(|c| c.id.name() == "prometheus_http_request_duration_seconds_bucket").collect();
    assert!(!buckets.is_empty());
    assert!(buckets.iter().any(|c| c.id.label("le") == Some("+Inf")));
    assert!(data.series.iter().any(|c| c.id.name() == "prometheus_http_request_duration_seconds_count"));
    assert!(data.series.iter().all(|c| c.id.label("env") == Some("test")));

    // A metrics filter keeps a family and its parts.
    let mut only = ScrapeSource::new(
        format!("http://127.0.0.1:{}/metrics", prom.port),
        vec!["prometheus_http_request_duration_seconds".into()],
        vec![],
        reqwest::Client::new(),
    );
    let data = series(only.collect(&mut OpCtx::new(vigil::time::now_ms())).await.unwrap());
    assert!(!data.series.is_empty());
    assert!(data.series.iter().all(|c| c.id.name().starts_with("prometheus_http_request_duration_seconds")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_range_reads_values_and_moves_its_cursor() {
    let prom = tokio::task::spawn_blocking(start_prometheus).await.unwrap();
    let url = format!("http://127.0.0.1:{}", prom.port);
    // Wait until Prometheus has scraped itself a few times.
    let port = prom.port;
    tokio::task::spawn_blocking(move || {
        wait_for("samples of `up`", Duration::from_secs(60), || {
            http_get(port, "/api/v1/query?query=count_over_time(up%5B1m%5D)")
                .filter(|(_, b)| b.contains("\"value\"") && !b.contains("\"result\":[]"))
        })
    })
    .await
    .unwrap();
    let mut src = QueryRangeSource::new(url.clone(), "up".into(), 1000, 60_000, None, reqwest::Client::new());
    let now = vigil::time::now_ms();
    let data = series(src.collect(&mut OpCtx::new(now)).await.unwrap());
    let up = data.series.iter().find(|c| c.id.name() == "up").expect("the `up` series");
    assert_eq!(up.id.label("job"), Some("self"));
    assert!(!up.values.is_empty() && up.values.iter().all(|v| *v == 1.0), "{:?}", up.values);
    let cursor: i64 = src.cursor().unwrap().parse().unwrap();
    assert!(cursor <= now && cursor > now - 1000);
    // The next range starts after the cursor: no sample twice.
    let later = series(src.collect(&mut OpCtx::new(now + 3000)).await.unwrap());
    for c in &later.series {
        assert!(c.ts.iter().all(|t| *t > cursor), "a sample at or before the cursor came back");
    }
    // A PromQL error is an error with Prometheus's reason.
    let mut bad = QueryRangeSource::new(url, "sum(".into(), 1000, 60_000, None, reqwest::Client::new());
    let err = bad.collect(&mut OpCtx::new(now)).await.unwrap_err().to_string();
    assert!(err.contains("bad_data") || err.contains("parse error"), "{err}");
}

#[tokio::test]
async fn an_unreachable_prometheus_is_a_clear_error() {
    let port = free_port();
    let mut src = QueryRangeSource::new(format!("http://127.0.0.1:{port}"), "up".into(), 1000, 60_000, None, reqwest::Client::new());
    let err = src.collect(&mut OpCtx::new(vigil::time::now_ms())).await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.to_lowercase().contains("refused"), "{err}");
    assert!(src.cursor().is_none(), "a failed query does not move the cursor");
    let mut scrape = ScrapeSource::new(format!("http://127.0.0.1:{port}/metrics"), vec![], vec![], reqwest::Client::new());
    assert!(scrape.collect(&mut OpCtx::new(0)).await.is_err());
}
