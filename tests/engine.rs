//! The engine, in process: ticks, failures that fail a tick but not the engine, the run
//! history and cursors in a real SQLite file, webhooks over real HTTP, timeouts, retries.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use vigil::engine::{build_pipeline, run_tick, Engine, Shared};
use vigil::store::prelude::*;
use vigil::store::SqliteStore;

fn compile(dir: &TempDir, src: &str) -> vigil::Compiled {
    let file = dir.join("p.vigil");
    std::fs::write(&file, src).unwrap();
    let out = vigil::compile(&[file]).unwrap();
    assert!(out.plan.is_some(), "{:?}", out.diagnostics);
    out
}

async fn store(dir: &TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("state")).await.unwrap())
}

/// Polls an async condition (never a fixed sleep).
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(shared: &Shared, needle: &str) -> f64 {
    shared.metrics.render("").lines().find(|l| l.starts_with(needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stage_fails_its_tick_not_the_engine() {
    let dir = TempDir::new("engine-fail");
    let out = compile(&dir, "pipeline p {\n  every 50ms\n  collect raw = csv(path: \"data.csv\")\n  predict s = zscore(raw, min_samples: 2)\n  respond r = log(s)\n}\n");
    let store = store(&dir).await;
    let engine = Engine::start(out.plan.as_ref().unwrap(), &out.sources, &out.version, store.clone(), None).await.unwrap();
    let shared = engine.shared.clone();
    until("two failed ticks", async || (metric(&shared, "vigil_ticks_total{pipeline=\"p\",outcome=\"failed\"}") >= 2.0).then_some(()))
        .await;
    let runs = store.recent_runs("p", 10).await.unwrap();
    let failed = runs.iter().find(|r| r.status == "failed").expect("a failed run in the history");
    assert_eq!(failed.failed_stage.as_deref(), Some("p.raw"));
    let err = failed.error.as_deref().unwrap();
    assert!(err.contains("p.vigil:3:3") && err.contains("data.csv"), "the error names the stage's source position and the file: {err}");
    assert_eq!(failed.version, out.version, "each run records the pipeline version it used");
    // The engine keeps ticking, and recovers once the file appears.
    std::fs::write(dir.path().join("data.csv"), "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,2\n2024-01-01 00:02:00,3\n")
        .unwrap();
    until("an ok tick", async || (metric(&shared, "vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}") >= 1.0).then_some(())).await;
    assert!(metric(&shared, "vigil_stage_errors_total{pipeline=\"p\",stage=\"p.raw\"}") >= 2.0);
    assert!(engine.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_survive_a_restart() {
    let dir = TempDir::new("engine-cursor");
    let csv = dir.path().join("data.csv");
    let mut rows = String::from("timestamp,value\n");
    for i in 0..10 {
        rows.push_str(&format!("2024-01-01 00:{i:02}:00,{i}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let src =
        "pipeline p {\n  every 50ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  predict _s = zscore(raw)\n}\n";
    let out = compile(&dir, src);
    let plan = out.plan.as_ref().unwrap();
    let store = store(&dir).await;
    let engine = Engine::start(plan, &out.sources, &out.version, store.clone(), None).await.unwrap();
    // 10 samples and 10 scores.
    until("the first ten rows", async || store.recent_runs("p", 50).await.unwrap().iter().any(|r| r.items == 20).then_some(())).await;
    assert!(engine.shutdown(Duration::from_secs(5)).await);
    let mut f = std::fs::OpenOptions::new().append(true).open(&csv).unwrap();
    for i in 10..13 {
        writeln!(f, "2024-01-01 00:{i:02}:00,{i}").unwrap();
    }
    drop(f);
    let before = store.recent_runs("p", 1000).await.unwrap().len();
    let engine = Engine::start(plan, &out.sources, &out.version, store.clone(), None).await.unwrap();
    let runs = until("the three new rows", async || {
        let runs = store.recent_runs("p", 1000).await.unwrap();
        runs.iter().take(runs.len() - before).any(|r| r.items > 0).then_some(runs)
    })
    .await;
    let after: Vec<i64> = runs.iter().take(runs.len() - before).map(|r| r.items).filter(|i| *i > 0).collect();
    assert_eq!(after, vec![6], "only the rows appended while stopped are read again");
    assert!(engine.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_real_http() {
    let dir = TempDir::new("engine-webhook");
    let src = r#"pipeline alerts {
  on webhook "/hooks/am"
  collect events = webhook_events(format: "alertmanager", max_body: 2000)
  preprocess counts = aggregate(events, by: ["alertname"], op: "count")
  predict storm = threshold(counts, above: 1.0)
  respond r = log(storm)
}
"#;
    let out = compile(&dir, src);
    let engine = Engine::start(out.plan.as_ref().unwrap(), &out.sources, &out.version, store(&dir).await, None).await.unwrap();
    let shared = engine.shared.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, vigil::server::router(shared)).await });
    let shared = engine.shared.clone();
    let payload = r#"{"version":"4","status":"firing","receiver":"vigil","groupKey":"g","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","alerts":[
      {"status":"firing","labels":{"alertname":"HighCPU"},"annotations":{},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"a"},
      {"status":"firing","labels":{"alertname":"HighCPU"},"annotations":{},"startsAt":"2024-01-01T00:00:01Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"b"}]}"#;
    let post = move |body: String| {
        tokio::task::spawn_blocking(move || http("POST", port, "/hooks/am", &body, &[("Content-Type", "application/json")]).unwrap())
    };
    let (code, body) = post(payload.to_owned()).await.unwrap();
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"accepted\":2"), "{body}");
    until("the events to be counted", async || {
        (metric(&shared, "vigil_stage_items_total{pipeline=\"alerts\",stage=\"alerts.counts\"}") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(metric(&shared, "vigil_stage_items_total{pipeline=\"alerts\",stage=\"alerts.events\"}"), 2.0);
    let (code, body) = post("{not json".to_owned()).await.unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, _) = post(format!("{{\"alerts\": [], \"pad\": \"{}\"}}", "x".repeat(3000))).await.unwrap();
    assert_eq!(code, 413);
    let (code, _) = tokio::task::spawn_blocking(move || http_get(port, "/hooks/am").unwrap()).await.unwrap();
    assert_eq!(code, 405);
    let (code, _) = tokio::task::spawn_blocking(move || http("POST", port, "/hooks/nope", "{}", &[]).unwrap()).await.unwrap();
    assert_eq!(code, 404);
    assert!(engine.shutdown(Duration::from_secs(5)).await);
}

/// A TCP server that accepts connections and answers the `n`-th one (0-based) with a
/// Prometheus exposition if `n >= answer_from`, and otherwise closes it (or, with `hang`,
/// never answers). Returns its port and a connection counter.
fn flaky_server(answer_from: usize, hang: bool) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < answer_from {
                if hang {
                    held.push(s);
                }
                continue;
            }
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "# TYPE up gauge\nup{job=\"x\"} 1\n";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, count)
}

fn single_stage_plan(dir: &TempDir, url: &str, options: &str) -> vigil::Compiled {
    compile(dir, &format!("pipeline p {{\n  every 1h\n  collect raw = prometheus.scrape(url: \"{url}\") {{ {options} }}\n  predict _s = zscore(raw)\n}}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_until_the_source_answers() {
    let dir = TempDir::new("engine-retry");
    let (port, count) = flaky_server(2, false);
    let out = single_stage_plan(&dir, &format!("http://127.0.0.1:{port}/metrics"), "retry 3 backoff 10ms");
    let p = build_pipeline(&out.plan.as_ref().unwrap().pipelines[0], &out.sources, &out.version, None, None).unwrap();
    let shared = Shared::default();
    let report = run_tick(&p, &shared, vigil::time::now_ms()).await;
    assert!(report.ok, "{:?}", report.error);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3, "two failures, then the third attempt answers");
    // With fewer retries than failures, the tick fails.
    let (port, _) = flaky_server(5, false);
    let out = single_stage_plan(&dir, &format!("http://127.0.0.1:{port}/metrics"), "retry 1 backoff 10ms");
    let p = build_pipeline(&out.plan.as_ref().unwrap().pipelines[0], &out.sources, &out.version, None, None).unwrap();
    let report = run_tick(&p, &shared, vigil::time::now_ms()).await;
    assert!(!report.ok);
    assert_eq!(report.failed_stage.as_deref(), Some("p.raw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_hangs_times_out() {
    let dir = TempDir::new("engine-timeout");
    let (port, _) = flaky_server(usize::MAX, true);
    let out = single_stage_plan(&dir, &format!("http://127.0.0.1:{port}/metrics"), "timeout 200ms");
    let p = build_pipeline(&out.plan.as_ref().unwrap().pipelines[0], &out.sources, &out.version, None, None).unwrap();
    let report = run_tick(&p, &Shared::default(), vigil::time::now_ms()).await;
    assert!(!report.ok);
    assert!(report.error.as_deref().unwrap().contains("timed out after 200 ms"), "{:?}", report.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_cannot_be_built_refuses_to_start_with_its_position() {
    let dir = TempDir::new("engine-unimpl");
    let out = compile(
        &dir,
        "pipeline p {\n  every 1s\n  collect raw = synthetic()\n  predict s = zscore(raw)\n  respond r = email(s, to: [\"a@b\"], smtp: secret(\"env:X\"))\n}\n",
    );
    let err = Engine::start(out.plan.as_ref().unwrap(), &out.sources, &out.version, store(&dir).await, None).await.err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("p.vigil:5:3") && msg.contains("p.r") && msg.contains("secret(\"env:X\") is not set"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_file_without_line_breaks_is_skipped_not_hung_on() {
    use vigil::runtime::{OpCtx, Source};
    let dir = TempDir::new("engine-huge");
    let path = dir.join("huge.csv");
    // A sparse 1 GB file of NUL bytes: no line break anywhere.
    std::fs::File::create(&path).unwrap().set_len(1 << 30).unwrap();
    let mut src = vigil::runtime::ops::collect::CsvSource::new(path, "timestamp".into(), vec!["value".into()], vec![]);
    let mut ticks = 0;
    let mut skipped = 0;
    loop {
        let mut ctx = OpCtx::new(0);
        src.collect(&mut ctx).await.unwrap();
        skipped += ctx.skipped_total();
        ticks += 1;
        let offset: u64 = serde_json::from_str::<serde_json::Value>(&src.cursor().unwrap()).unwrap()["offset"].as_u64().unwrap();
        if offset == 1 << 30 {
            break;
        }
        assert!(ticks < 100, "the source does not move through the file");
    }
    assert_eq!(ticks, 16, "64 MiB per tick");
    assert_eq!(skipped, 16);
}

/// A store that refuses to record incidents and notifications while `failing` is set, and
/// otherwise is the real SQLite store.
struct FailingStore {
    inner: Arc<dyn Store>,
    failing: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicUsize,
}

use vigil::feedback::FeedbackRecord;
use vigil::learn::registry::ModelEvent;
use vigil::learn::ModelMeta;
use vigil::respond::{AuditRecord, Incident, Notification, OutboxRow, Silence};
use vigil::runtime::BoxFuture;
use vigil::store::{ModelRow, RunRecord, StoreError};

type R<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

impl CursorStore for FailingStore {
    fn load_cursor<'a>(&'a self, stage: &'a str) -> R<'a, Option<String>> {
        self.inner.load_cursor(stage)
    }
    fn save_cursors<'a>(&'a self, cursors: &'a [(String, String)]) -> R<'a, ()> {
        self.inner.save_cursors(cursors)
    }
}

impl RunStore for FailingStore {
    fn record_run<'a>(&'a self, run: &'a RunRecord) -> R<'a, ()> {
        self.inner.record_run(run)
    }
    fn recent_runs<'a>(&'a self, pipeline: &'a str, limit: i64) -> R<'a, Vec<RunRecord>> {
        self.inner.recent_runs(pipeline, limit)
    }
}

impl ModelStore for FailingStore {
    fn insert_model<'a>(&'a self, meta: &'a ModelMeta, path: &'a str, activate: bool) -> R<'a, i64> {
        self.inner.insert_model(meta, path, activate)
    }
    fn models<'a>(&'a self, key: Option<&'a str>) -> R<'a, Vec<ModelRow>> {
        self.inner.models(key)
    }
    fn activate_model<'a>(&'a self, id: i64) -> R<'a, bool> {
        self.inner.activate_model(id)
    }
    fn record_model_event<'a>(&'a self, event: &'a ModelEvent) -> R<'a, ()> {
        self.inner.record_model_event(event)
    }
}

impl IncidentStore for FailingStore {
    fn record_respond<'a>(&'a self, incidents: &'a [Incident], notifications: &'a [Notification], audit: &'a [AuditRecord]) -> R<'a, ()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            self.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Box::pin(async { Err(StoreError::Query(sqlx::Error::PoolTimedOut)) });
        }
        self.inner.record_respond(incidents, notifications, audit)
    }
    fn incidents<'a>(&'a self, status: Option<&'a str>, limit: i64) -> R<'a, Vec<Incident>> {
        self.inner.incidents(status, limit)
    }
    fn incidents_since(&self, since: i64) -> R<'_, Vec<Incident>> {
        self.inner.incidents_since(since)
    }
    fn audit<'a>(&'a self, record: &'a AuditRecord) -> R<'a, ()> {
        self.inner.audit(record)
    }
    fn audit_of<'a>(&'a self, incident: &'a str) -> R<'a, Vec<AuditRecord>> {
        self.inner.audit_of(incident)
    }
    fn audit_since<'a>(&'a self, since: i64, events: &'a [&'a str]) -> R<'a, Vec<AuditRecord>> {
        self.inner.audit_since(since, events)
    }
}

impl OutboxStore for FailingStore {
    fn due_notifications<'a>(&'a self, now: i64, limit: i64) -> R<'a, Vec<OutboxRow>> {
        self.inner.due_notifications(now, limit)
    }
    fn outbox<'a>(&'a self, limit: i64) -> R<'a, Vec<OutboxRow>> {
        self.inner.outbox(limit)
    }
    fn outbox_depth(&self) -> R<'_, (i64, Option<i64>)> {
        self.inner.outbox_depth()
    }
    fn mark_started(&self, id: i64, now: i64) -> R<'_, ()> {
        self.inner.mark_started(id, now)
    }
    fn interrupted_notifications<'a>(&'a self, now: i64, stages: &'a [String]) -> R<'a, Vec<OutboxRow>> {
        self.inner.interrupted_notifications(now, stages)
    }
    fn reschedule_notification<'a>(&'a self, id: i64, attempts: u32, next: i64, why: &'a str) -> R<'a, ()> {
        self.inner.reschedule_notification(id, attempts, next, why)
    }
    fn finish_notification<'a>(&'a self, id: i64, status: &'a str, error: Option<&'a str>, audit: &'a AuditRecord) -> R<'a, ()> {
        self.inner.finish_notification(id, status, error, audit)
    }
}

impl SilenceStore for FailingStore {
    fn silences(&self) -> R<'_, Vec<Silence>> {
        self.inner.silences()
    }
    fn insert_silence<'a>(&'a self, s: &'a Silence) -> R<'a, i64> {
        self.inner.insert_silence(s)
    }
}

impl FeedbackStore for FailingStore {
    fn record_feedback<'a>(&'a self, record: &'a FeedbackRecord, incident: Option<&'a Incident>, audit: &'a AuditRecord) -> R<'a, i64> {
        self.inner.record_feedback(record, incident, audit)
    }
    fn feedback(&self) -> R<'_, Vec<FeedbackRecord>> {
        self.inner.feedback()
    }
}

/// An engine over a store that refuses every write until told otherwise, running `src`
/// over an initially empty `data.csv`, once its first tick is ok; and a writer of rows
/// (minute, value) to that file.
async fn engine_over_a_refusing_store(
    dir: &TempDir,
    src: &str,
) -> (Engine, Arc<FailingStore>, Arc<dyn Store>, impl Fn(&[(u32, f64)]) + use<>) {
    let csv = dir.path().join("data.csv");
    std::fs::write(&csv, "timestamp,value\n").unwrap();
    let out = compile(dir, src);
    assert!(!out.diagnostics.has_errors(), "{:?}", out.diagnostics);
    let failing = Arc::new(FailingStore { inner: store(dir).await, failing: true.into(), refused: 0.into() });
    let store: Arc<dyn Store> = failing.clone();
    let engine = Engine::start(out.plan.as_ref().unwrap(), &out.sources, &out.version, store.clone(), None).await.unwrap();
    let shared = engine.shared.clone();
    until("an ok tick", async || (metric(&shared, "vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}") >= 1.0).then_some(())).await;
    let append = move |rows: &[(u32, f64)]| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&csv).unwrap();
        for (minute, v) in rows {
            writeln!(f, "2024-01-01 00:{minute:02}:00,{v}").unwrap();
        }
    };
    (engine, failing, store, append)
}

/// The state store refuses to record an incident: the respond stage's tick fails, no
/// cursor is saved past the data, and once the store recovers the incident — opened and
/// resolved while it was down — is recorded once, with one `firing` and one `resolved`
/// notification: nothing lost, nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_a_commit_fails_the_tick_and_loses_nothing() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = TempDir::new("engine-commit");
    let src = "pipeline p {\n  every 50ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  \
               predict s = threshold(raw, above: 50.0)\n  respond r = log(s)\n}\n";
    let (engine, failing, store, append) = engine_over_a_refusing_store(&dir, src).await;
    let shared = engine.shared.clone();
    let cursor_before = store.load_cursor("p.raw").await.unwrap();
    // The incident opens while the store refuses.
    append(&[(0, 1.0), (1, 1.0), (2, 100.0)]);
    until("a refused commit", async || (failing.refused.load(SeqCst) >= 1).then_some(())).await;
    let failed = until("a failed tick", async || {
        store.recent_runs("p", 100).await.unwrap().into_iter().find(|r| r.status == "failed" && r.failed_stage.as_deref() == Some("p.r"))
    })
    .await;
    assert!(failed.error.as_deref().unwrap().contains("cannot record"), "{failed:?}");
    // It resolves while the store still refuses; later ticks fail too.
    let refused = failing.refused.load(SeqCst);
    append(&[(3, 1.0)]);
    until("more refused commits", async || (failing.refused.load(SeqCst) > refused + 1).then_some(())).await;
    assert_eq!(store.load_cursor("p.raw").await.unwrap(), cursor_before, "no cursor is saved past data not recorded");
    assert!(store.incidents(None, 10).await.unwrap().is_empty());
    // The store recovers: everything decided while it refused is recorded, once.
    failing.failing.store(false, SeqCst);
    let incidents = until("the incident recorded", async || {
        let all = store.incidents(None, 10).await.unwrap();
        (!all.is_empty()).then_some(all)
    })
    .await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].status, "resolved");
    let transitions = |rows: Vec<OutboxRow>| rows.into_iter().map(|o| o.notification.transition).collect::<Vec<_>>();
    let mut sent = transitions(store.outbox_of(&incidents[0].id).await.unwrap());
    sent.sort();
    assert_eq!(sent, ["firing", "resolved"]);
    // The cursor moves once the data is recorded (at the end of that tick, just after).
    until("the cursor to move", async || (store.load_cursor("p.raw").await.unwrap() != cursor_before).then_some(())).await;
    // Later ticks record nothing again.
    let ok = metric(&shared, "vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}");
    until("two more ok ticks", async || (metric(&shared, "vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}") >= ok + 2.0).then_some(()))
        .await;
    assert_eq!(transitions(store.outbox(100).await.unwrap()).len(), 2);
    let audit: Vec<String> = store.audit_of(&incidents[0].id).await.unwrap().into_iter().map(|a| a.event).collect();
    assert_eq!(audit.iter().filter(|e| *e == "opened").count(), 1, "{audit:?}");
    assert_eq!(audit.iter().filter(|e| *e == "resolved").count(), 1, "{audit:?}");
    assert!(engine.shutdown(Duration::from_secs(5)).await);
}

/// A stage routing another's incidents while the store refuses: the upstream stage's
/// transitions reach it only once recorded (a failed tick outputs nothing, the next
/// outputs them), so once the store recovers each stage's incident is recorded once,
/// with one `firing` and one `resolved`: nothing lost, nothing doubled downstream either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_stage_loses_nothing_while_the_store_refuses() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = TempDir::new("engine-route");
    let src = "pipeline p {\n  every 50ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  \
               predict s = threshold(raw, above: 50.0)\n  respond r = log(s)\n  respond page = log(r, when: r.value > 50.0)\n}\n";
    let (engine, failing, store, append) = engine_over_a_refusing_store(&dir, src).await;
    let shared = engine.shared.clone();
    // Opens and resolves while the store refuses, over several ticks.
    append(&[(0, 1.0), (1, 1.0), (2, 100.0)]);
    until("a refused commit", async || (failing.refused.load(SeqCst) >= 1).then_some(())).await;
    let refused = failing.refused.load(SeqCst);
    append(&[(3, 1.0)]);
    until("more refused commits", async || (failing.refused.load(SeqCst) > refused + 1).then_some(())).await;
    assert!(store.incidents(None, 10).await.unwrap().is_empty());
    failing.failing.store(false, SeqCst);
    let incidents = until("both stages' incidents resolved", async || {
        let all = store.incidents(None, 10).await.unwrap();
        (all.len() >= 2 && all.iter().all(|i| i.status == "resolved")).then_some(all)
    })
    .await;
    let ok = metric(&shared, "vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}");
    until("two more ok ticks", async || (metric(&shared, "vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}") >= ok + 2.0).then_some(()))
        .await;
    let mut stages: Vec<&str> = incidents.iter().map(|i| i.stage.as_str()).collect();
    stages.sort();
    assert_eq!(stages, ["p.page", "p.r"], "{incidents:?}");
    for i in &incidents {
        let mut sent: Vec<String> = store.outbox_of(&i.id).await.unwrap().into_iter().map(|o| o.notification.transition).collect();
        sent.sort();
        assert_eq!(sent, ["firing", "resolved"], "{}", i.stage);
    }
    assert_eq!(store.outbox(100).await.unwrap().len(), 4);
    assert!(engine.shutdown(Duration::from_secs(5)).await);
}

/// `audit_since` returns the records of the events asked for, from `since` on, oldest
/// first (SQLite filters them: reports ask for `sent` and `failed` out of a week of audit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_since_filters_by_time_and_event() {
    let dir = TempDir::new("engine-audit");
    let store = store(&dir).await;
    let rec = |ts: i64, event: &str| AuditRecord {
        ts,
        incident_id: format!("i{ts}"),
        stage: "p.r".into(),
        event: event.into(),
        detail: String::new(),
    };
    let records = [rec(1, "sent"), rec(2, "queued"), rec(3, "failed"), rec(4, "sent"), rec(5, "opened")];
    store.record_respond(&[], &[], &records).await.unwrap();
    let got = |since, events: &'static [&'static str]| {
        let store = store.clone();
        async move { store.audit_since(since, events).await.unwrap().into_iter().map(|a| (a.ts, a.event)).collect::<Vec<_>>() }
    };
    assert_eq!(got(2, &["sent", "failed"]).await, [(3, "failed".to_owned()), (4, "sent".to_owned())]);
    assert_eq!(got(0, &["opened"]).await, [(5, "opened".to_owned())]);
    assert_eq!(got(4, &[]).await.len(), 2, "no events named: all of them");
}
