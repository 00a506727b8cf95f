//! Respond benchmarks (BENCHMARKS.md, "Respond"):
//!
//! 1. **Detection → SMTP acceptance.** A real SMTP server (Debian's aiosmtpd) on loopback;
//!    a respond stage with an email channel over the SQLite outbox and the dispatcher, as
//!    `vigil run` wires them. Each round hands the stage one anomalous score (a new series,
//!    so a new incident) and waits until the outbox row is `sent`, i.e. until the SMTP
//!    server answered `250` to the message. The latency runs from just before the stage
//!    sees the score to the dispatcher's `sent` record.
//! 2. **Outbox throughput.** 10 000 incidents are opened in one tick on a webhook channel
//!    and the dispatcher delivers them to a local HTTP receiver (axum) in this process;
//!    the figure is notifications per second from the first enqueue to the last `sent`.
//!
//! `cargo run --release --example respond_bench [ROUNDS] [NOTIFICATIONS]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil::data::{Data, ScoreColumn, ScoresData, SeriesId};
use vigil::expr::Template;
use vigil::respond::channels::{Channel, Deliver, Webhook};
use vigil::respond::Responder;
use vigil::runtime::ops::respond::{Policy, Respond};
use vigil::runtime::{OpCtx, Operator};
use vigil::store::prelude::*;
use vigil::store::SqliteStore;

fn scores(series: &[String], ts: i64) -> Data {
    let cols = series
        .iter()
        .map(|name| {
            let mut c = ScoreColumn::new(SeriesId::new(name.clone(), []));
            c.ts.push(ts);
            c.value.push(100.0);
            c.score.push(0.99);
            c.expected.push(f64::NAN);
            c.lower.push(f64::NAN);
            c.upper.push(f64::NAN);
            c.anomalous.push(true);
            c
        })
        .collect();
    Data::Scores(Arc::new(ScoresData { series: cols }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn stage(responder: &Arc<Responder>, key: &str, kind: Box<dyn Deliver>) -> Respond {
    let channel = Channel { kind, subject: Template::new("[vigil] {{ incident.status }} {{ incident.key }}").unwrap(), body: None };
    Respond::new(
        "bench".into(),
        key.into(),
        None,
        Template::new("{{ series }}").unwrap(),
        Vec::new(),
        Policy::default(),
        channel,
        responder.clone(),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = rt.enter();
    let dir = std::env::temp_dir().join(format!("vigil-respond-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // --- 1. detection → SMTP acceptance, over a real aiosmtpd.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut smtpd = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Sink"])
        .spawn()
        .expect("aiosmtpd (Debian package python3-aiosmtpd) is needed: run ./test.sh once, or apt-get install python3-aiosmtpd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (store, responder, cancel) = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("smtp")).await.unwrap());
        let responder = Arc::new(Responder::open(store.clone(), None, false).await.unwrap());
        let cancel = tokio_util::sync::CancellationToken::new();
        tokio::spawn(vigil::respond::dispatch::run(responder.clone(), cancel.clone(), std::sync::Arc::new(|_: &str, _: &str, _: &str| {})));
        (store, responder, cancel)
    });
    let smtp = vigil::respond::channels::smtp(
        &format!("smtp://127.0.0.1:{port}"),
        "none",
        "vigil@localhost",
        &["sre@example.com".into()],
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    let mut op = stage(&responder, "bench.mail", Box::new(smtp));
    let mut lat = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let input = scores(&[format!("latency_{r}")], vigil::time::now_ms());
        let t0 = Instant::now();
        let started = vigil::time::now_ms();
        op.process(&[input], &mut OpCtx::new(started)).unwrap();
        rt.block_on(op.commit().expect("an incident to record")).unwrap();
        let id = responder.list().into_iter().find(|i| i.series[0] == format!("latency_{r}")).unwrap().id;
        // Wait for the dispatcher's `sent` (polling the store; the poll interval is well
        // under the figure measured).
        let sent_at = rt.block_on(async {
            loop {
                let audit = store.audit_of(&id).await.unwrap();
                if let Some(a) = audit.iter().find(|a| a.event == "sent") {
                    break a.ts;
                }
                assert!(t0.elapsed() < Duration::from_secs(30), "round {r}: not sent: {audit:?}");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        });
        lat.push((sent_at - started) as f64);
        if r % 100 == 99 {
            eprintln!("{} rounds", r + 1);
        }
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "detection -> SMTP 250 ({rounds} incidents, aiosmtpd on loopback): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    cancel.cancel();
    let _ = smtpd.kill();
    let _ = smtpd.wait();

    // --- 2. outbox throughput into a local HTTP receiver.
    let received = Arc::new(AtomicUsize::new(0));
    let (store, responder, cancel, url) = rt.block_on(async {
        let got = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |_body: String| {
                let got = got.clone();
                async move {
                    got.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("hook")).await.unwrap());
        let responder = Arc::new(Responder::open(store.clone(), None, false).await.unwrap());
        let cancel = tokio_util::sync::CancellationToken::new();
        tokio::spawn(vigil::respond::dispatch::run(responder.clone(), cancel.clone(), std::sync::Arc::new(|_: &str, _: &str, _: &str| {})));
        (store, responder, cancel, url)
    });
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut op = stage(&responder, "bench.hook", Box::new(Webhook { url, secret: Some("k3y".into()), client }));
    let names: Vec<String> = (0..total).map(|i| format!("svc_{i}")).collect();
    let t0 = Instant::now();
    op.process(&[scores(&names, vigil::time::now_ms())], &mut OpCtx::new(vigil::time::now_ms())).unwrap();
    rt.block_on(op.commit().expect("incidents to record")).unwrap();
    let enqueued = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) < total {
        assert!(Instant::now() < deadline, "only {} of {total} delivered", received.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(1));
    }
    let delivered = t0.elapsed();
    // Wait for the last rows to be marked sent too.
    let marked = rt.block_on(async {
        loop {
            let pending = store.due_notifications(i64::MAX, 1).await.unwrap();
            if pending.is_empty() {
                break t0.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    println!(
        "outbox: {total} notifications enqueued in {:.0} ms; delivered in {:.2} s, all marked sent in {:.2} s: {:.0} notifications/s",
        enqueued.as_secs_f64() * 1000.0,
        delivered.as_secs_f64(),
        marked.as_secs_f64(),
        total as f64 / marked.as_secs_f64()
    );
    cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
