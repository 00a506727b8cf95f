//! Per-tick engine overhead: one tick of a 5-stage DAG whose source brings nothing new, so
//! that what is measured is the engine (scheduling, locking, timing, metrics), not the
//! operators. Target: under 50 µs. `cargo bench --bench engine`.

use criterion::{criterion_group, criterion_main, Criterion};

const PIPELINE: &str = r#"pipeline overhead {
  every 1h
  collect raw = synthetic(series: 1, speedup: 0.001)
  preprocess filled = fill(raw, "previous")
  preprocess scaled = normalize(filled, method: "z")
  predict scores = zscore(scaled)
  respond r = log(scores)
}
"#;

fn bench(c: &mut Criterion) {
    let out = vigil::compile_str("overhead.vigil", PIPELINE);
    let plan = out.plan.expect("the pipeline compiles");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let p = vigil::engine::build_pipeline(&plan.pipelines[0], &out.sources, &out.version, None, None).unwrap();
    let shared = vigil::engine::Shared::default();
    let now = vigil::time::now_ms();
    // The first tick brings the synthetic source's history; later ticks bring nothing.
    rt.block_on(vigil::engine::run_tick(&p, &shared, now));
    c.bench_function("tick of a 5-stage DAG (no new data)", |b| {
        b.iter(|| {
            let r = rt.block_on(vigil::engine::run_tick(&p, &shared, now));
            assert!(r.ok);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
