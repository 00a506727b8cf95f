//! `vigil check` throughput: the whole stdlib plus `pipelines/` (target: under 20 ms), and
//! a generated 10 MB corpus of pipelines (target: under 1 s), parse + check + plan.
//!
//! `cargo bench --bench check`. The 10 MB corpus is also written to
//! `target/bench-corpus/corpus.vigil` so that the whole process can be timed:
//! `/usr/bin/time target/release/vigil check --timings target/bench-corpus/corpus.vigil`.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};

/// One realistic pipeline: a Prometheus query, a chain, a stdlib detector, a condition,
/// options, doc and plain comments.
const PIPELINE: &str = r#"/// Checkout latency N, paged when anomalous.
pipeline latency_N {
  every 30s

  // p99 over five minutes, per instance.
  collect raw = prometheus.query_range(
    url: "http://127.0.0.1:9090",
    query: "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket{job=\"checkout_N\"}[5m]))",
    step: 30s,
  )
  preprocess clean = resample(raw, every: 30s, agg: "mean") | fill("linear", max_gap: 5m)
  predict scores = robust_zscore(clean, window: 1h, threshold: 4.0)
  respond page = log(scores, when: scores.anomalous and scores.score > 0.9) {
    pending for 2m
    rate_limit 10 per 1h
  }
}

"#;

pub fn corpus(bytes: usize) -> String {
    let mut s = String::from("use std.detect.{robust_zscore}\n\n");
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&PIPELINE.replace('N', &i.to_string()));
        i += 1;
    }
    s
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bench(c: &mut Criterion) {
    let repo = vec![root().join("pipelines"), root().join("stdlib")];
    c.bench_function("check stdlib + pipelines/", |b| {
        b.iter(|| {
            let out = vigil::compile(&repo).unwrap();
            assert!(out.plan.is_some());
        })
    });

    let text = corpus(10 << 20);
    let dir = root().join("target/bench-corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("corpus.vigil");
    std::fs::write(&file, &text).unwrap();
    let mut group = c.benchmark_group("check 10 MB corpus");
    group.sample_size(10);
    group.bench_function("parse + check + plan", |b| {
        b.iter(|| {
            let out = vigil::compile(&[Path::new(&file).to_path_buf()]).unwrap();
            assert!(out.plan.is_some(), "{:?}", out.diagnostics.0.first());
            // As the CLI does: the process would exit here, so the trees are not freed.
            std::mem::forget(out);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
