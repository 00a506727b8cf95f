//! The state store's behaviour, one suite run against both stores: every method of the
//! domain seams (cursors, runs, models, incidents and audit, the outbox, silences,
//! verdicts) on [`SqliteStore`] (a temporary directory) and on [`PostgresStore`] (a fresh
//! database `vigil_test_…` per test, dropped at its end, on the server of `VIGIL_TEST_PG`,
//! default `postgres://postgres@127.0.0.1:5432/test`). Then what is PostgreSQL's own:
//! migrations, a newer schema refused, bad URLs, one engine per database, and `vigil run
//! --store postgres://…` end to end across a restart.
//!
//! PostgreSQL missing is a failure, never a skip: `./test.sh` installs and starts it.

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::{Connection, Executor};

use common::*;
use vigil::feedback::{FeedbackRecord, Verdict};
use vigil::learn::registry::ModelEvent;
use vigil::learn::ModelMeta;
use vigil::respond::{AuditRecord, Incident, Notification, OutboxRow, Silence, SilenceMatcher};
use vigil::store::prelude::*;
use vigil::store::{ModelRow, PostgresStore, RunRecord, SqliteStore, StoreError};

// ---------------------------------------------------------------- PostgreSQL databases

/// The server's URL (a database the tests may connect to, to create theirs).
fn pg_url() -> String {
    std::env::var("VIGIL_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` naming database `db` instead.
fn with_database(url: &str, db: &str) -> String {
    let rest = url.find("://").map_or(0, |i| i + 3);
    let path = url[rest..].find('/').map_or(url.len(), |i| rest + i);
    let query = url[path..].find('?').map_or("", |i| &url[path + i..]);
    format!("{}/{db}{query}", &url[..path])
}

async fn admin() -> sqlx::PgConnection {
    let url = pg_url();
    match sqlx::PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {} ({e}). The store tests need it: run them with ./test.sh, which installs \
             and starts it, or start it (`pg_ctlcluster 15 main start`), or point VIGIL_TEST_PG at one \
             (postgres://USER@HOST:PORT/DATABASE, a role that may CREATE DATABASE).",
            vigil::store::redact(&url)
        ),
    }
}

/// A fresh, empty database: its name and URL.
async fn create_database() -> (String, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("vigil_test_{}_{n}_{nanos}", std::process::id());
    let mut conn = admin().await;
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    let url = with_database(&pg_url(), &name);
    (name, url)
}

async fn drop_database(name: &str) {
    let mut conn = admin().await;
    if let Err(e) = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await {
        eprintln!("DROP DATABASE {name}: {e}");
    }
    let _ = conn.close().await;
}

/// Runs `f` with the URL of a fresh database, dropped afterwards (also when `f` panics).
async fn on_postgres<F, Fut>(f: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (name, url) = create_database().await;
    let outcome = AssertUnwindSafe(f(url)).catch_unwind().await;
    drop_database(&name).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------- fixtures

fn incident(id: &str, status: &str, opened_at: i64) -> Incident {
    Incident {
        id: id.to_owned(),
        key: format!("cpu{{host=\"{id}\"}}"),
        pipeline: "p".into(),
        stage: "p.alert".into(),
        series: vec![format!("cpu{{host=\"{id}\"}}")],
        labels: [("host".to_owned(), id.to_owned())].into_iter().collect(),
        status: status.into(),
        acknowledged: false,
        acknowledged_by: None,
        acknowledged_at: None,
        opened_at,
        updated_at: opened_at,
        resolved_at: (status == "resolved").then_some(opened_at + 1),
        resolved_by: None,
        score: 0.5,
        value: 1.25,
        silenced: false,
        feedback: None,
        feedback_note: None,
        notifications: 0,
        last_notified_at: None,
        samples: vec!["a line".into()],
    }
}

fn notification(i: &Incident, stage: &str, transition: &str) -> Notification {
    Notification {
        dedupe: format!("{}/{stage}/{transition}", i.id),
        incident_id: i.id.clone(),
        stage: stage.into(),
        channel: "log".into(),
        transition: transition.into(),
        subject: format!("{transition} {}", i.key),
        body: "body ünïcödé".into(),
        incident: i.clone(),
    }
}

fn audit(incident: &str, event: &str, ts: i64) -> AuditRecord {
    AuditRecord { ts, incident_id: incident.into(), stage: "p.alert".into(), event: event.into(), detail: format!("{event} at {ts}") }
}

fn meta(key: &str, series: &str, version: u32) -> ModelMeta {
    serde_json::from_value(serde_json::json!({
        "key": key, "series": series, "version": version, "kind": "baseline", "fingerprint": "f", "pipeline_version": "v",
        "data_from": 1, "data_to": 2, "samples": 3, "loss": 0.5, "val_loss": null, "epochs": 1, "train_ms": 4,
        "created_at": 1000 + i64::from(version), "center": 0.0, "scale": 1.0, "dims": [], "horizon": 1,
    }))
    .unwrap()
}

fn silence(id: i64, comment: &str) -> Silence {
    Silence {
        id,
        matchers: vec![SilenceMatcher::parse("service=checkout").unwrap()],
        comment: comment.into(),
        created_by: "test".into(),
        starts_at: 1,
        ends_at: 2,
        created_at: 1,
    }
}

fn run(pipeline: &str, n: i64, failed: bool) -> RunRecord {
    RunRecord {
        pipeline: pipeline.into(),
        version: format!("v{n}"),
        started_at: n * 10,
        finished_at: n * 10 + 5,
        status: if failed { "failed" } else { "ok" }.into(),
        items: n,
        error: failed.then(|| "boom".to_owned()),
        failed_stage: failed.then(|| "p.raw".to_owned()),
    }
}

// ---------------------------------------------------------------- the suite

type S = Arc<dyn Store>;

async fn cursors(s: S) {
    assert_eq!(s.load_cursor("p.raw").await.unwrap(), None);
    s.save_cursors(&[]).await.unwrap();
    s.save_cursors(&[("p.raw".into(), "c1".into()), ("p.other".into(), "{\"json\":1}".into())]).await.unwrap();
    assert_eq!(s.load_cursor("p.raw").await.unwrap().as_deref(), Some("c1"));
    assert_eq!(s.load_cursor("p.other").await.unwrap().as_deref(), Some("{\"json\":1}"));
    // Overwritten; a key given twice keeps its last cursor.
    s.save_cursors(&[("p.raw".into(), "c2".into()), ("p.raw".into(), "c3".into())]).await.unwrap();
    assert_eq!(s.load_cursor("p.raw").await.unwrap().as_deref(), Some("c3"));
    // Many at once (more than one multi-row statement).
    let many: Vec<(String, String)> = (0..450).map(|n| (format!("k{n}"), format!("c{n}"))).collect();
    s.save_cursors(&many).await.unwrap();
    assert_eq!(s.load_cursor("k449").await.unwrap().as_deref(), Some("c449"));
}

async fn runs(s: S) {
    for n in 1..=3 {
        s.record_run(&run("p", n, n == 2)).await.unwrap();
    }
    s.record_run(&run("q", 9, false)).await.unwrap();
    let got = s.recent_runs("p", 2).await.unwrap();
    assert_eq!(got, vec![run("p", 3, false), run("p", 2, true)], "newest first, every field kept");
    assert_eq!(s.recent_runs("p", 100).await.unwrap().len(), 3);
    assert_eq!(s.recent_runs("q", 100).await.unwrap(), vec![run("q", 9, false)]);
    assert!(s.recent_runs("none", 10).await.unwrap().is_empty());
}

async fn models(s: S) {
    let v1 = s.insert_model(&meta("p.train", "a", 1), "/m/a1", true).await.unwrap();
    let v2 = s.insert_model(&meta("p.train", "a", 2), "/m/a2", false).await.unwrap();
    let b1 = s.insert_model(&meta("p.train", "b", 1), "/m/b1", true).await.unwrap();
    let other = s.insert_model(&meta("q.train", "a", 1), "/m/q", true).await.unwrap();
    let active = |rows: &[ModelRow]| rows.iter().filter(|r| r.active).map(|r| r.id).collect::<Vec<_>>();
    let rows = s.models(Some("p.train")).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![v1, v2, b1], "by stage, series, version");
    assert_eq!(active(&rows), vec![v1, b1], "a candidate is not active");
    assert_eq!(rows[1].meta, meta("p.train", "a", 2));
    assert_eq!(rows[1].path, "/m/a2");
    assert_eq!(s.models(None).await.unwrap().len(), 4);
    // Activating a version deactivates the others of its series only.
    assert!(s.activate_model(v2).await.unwrap());
    assert_eq!(active(&s.models(None).await.unwrap()), vec![v2, b1, other]);
    assert!(!s.activate_model(999_999).await.unwrap(), "no such version");
    // A new active version; the same version again replaces it (same id).
    let v3 = s.insert_model(&meta("p.train", "a", 3), "/m/a3", true).await.unwrap();
    assert_eq!(active(&s.models(Some("p.train")).await.unwrap()), vec![v3, b1]);
    let again = s.insert_model(&meta("p.train", "a", 3), "/m/a3-bis", true).await.unwrap();
    assert_eq!(again, v3);
    assert_eq!(s.models(Some("p.train")).await.unwrap().iter().find(|r| r.id == v3).unwrap().path, "/m/a3-bis");
    // Model events go to the audit trail under the series' subject.
    let e = ModelEvent { ts: 5, key: "p.train".into(), series: "a".into(), event: "promoted".into(), detail: "by test".into() };
    s.record_model_event(&e).await.unwrap();
    let trail = s.audit_of(&e.subject()).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!((trail[0].event.as_str(), trail[0].stage.as_str(), trail[0].detail.as_str()), ("promoted", "p.train", "by test"));
}

async fn incidents_and_audit(s: S) {
    let a = incident("a", "firing", 100);
    let b = incident("b", "firing", 200);
    let c = incident("c", "resolved", 300);
    s.record_respond(&[a.clone(), b.clone(), c.clone()], &[], &[audit("a", "opened", 100), audit("b", "opened", 200)]).await.unwrap();
    assert_eq!(s.incidents(None, 10).await.unwrap(), vec![c.clone(), b.clone(), a.clone()], "newest first, whole");
    assert_eq!(s.incidents(None, 2).await.unwrap().len(), 2);
    assert_eq!(s.incidents(None, -1).await.unwrap().len(), 3, "a negative limit is none");
    assert_eq!(s.incidents(Some("firing"), 10).await.unwrap(), vec![b.clone(), a.clone()]);
    assert_eq!(s.incidents(Some("resolved"), 10).await.unwrap(), vec![c.clone()]);
    assert_eq!(s.incidents_since(200).await.unwrap(), vec![b.clone(), c.clone()], "oldest first");
    // An update: status and data change, the opening time stays.
    let mut a2 = a.clone();
    a2.status = "resolved".into();
    a2.resolved_at = Some(150);
    // The same incident twice in one call: the last one wins.
    let mut a3 = a2.clone();
    a3.notifications = 7;
    s.record_respond(&[a2, a3.clone()], &[], &[audit("a", "resolved", 150)]).await.unwrap();
    assert_eq!(s.incidents(Some("resolved"), 10).await.unwrap(), vec![c.clone(), a3.clone()]);
    assert_eq!(s.incidents_since(0).await.unwrap()[0], a3);
    // Audit: one record, by incident, since a time, by event.
    s.audit(&audit("b", "acknowledged", 250)).await.unwrap();
    let trail: Vec<String> = s.audit_of("a").await.unwrap().into_iter().map(|r| r.event).collect();
    assert_eq!(trail, ["opened", "resolved"]);
    assert_eq!(s.audit_of("b").await.unwrap(), vec![audit("b", "opened", 200), audit("b", "acknowledged", 250)]);
    assert!(s.audit_of("nope").await.unwrap().is_empty());
    let since: Vec<(String, String)> = s.audit_since(150, &[]).await.unwrap().into_iter().map(|r| (r.incident_id, r.event)).collect();
    assert_eq!(since, [("b".into(), "opened".into()), ("a".into(), "resolved".into()), ("b".into(), "acknowledged".into())]);
    let only: Vec<String> = s.audit_since(0, &["opened", "acknowledged"]).await.unwrap().into_iter().map(|r| r.event).collect();
    assert_eq!(only, ["opened", "opened", "acknowledged"]);
    assert!(s.audit_since(0, &["never"]).await.unwrap().is_empty());
    // Many at once.
    let many: Vec<Incident> = (0..450).map(|n| incident(&format!("m{n}"), "firing", 1000 + n)).collect();
    let audits: Vec<AuditRecord> = many.iter().map(|i| audit(&i.id, "opened", i.opened_at)).collect();
    s.record_respond(&many, &[], &audits).await.unwrap();
    assert_eq!(s.incidents(Some("firing"), 1000).await.unwrap().len(), 451);
}

async fn outbox_dedupe(s: S) {
    let a = incident("a", "firing", 100);
    let n = notification(&a, "p.alert", "firing");
    // Twice in one call, then again in another: one row.
    s.record_respond(std::slice::from_ref(&a), &[n.clone(), n.clone()], &[]).await.unwrap();
    s.record_respond(std::slice::from_ref(&a), std::slice::from_ref(&n), &[]).await.unwrap();
    let rows = s.outbox(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.notification, n, "the notification is kept whole");
    assert_eq!((row.status.as_str(), row.attempts, row.last_error.as_deref(), row.sent_at), ("pending", 0, None, None));
    assert!(row.created_at > 0 && row.next_attempt_at == row.created_at);
}

async fn outbox_order(s: S) {
    let a = incident("a", "firing", 100);
    let b = incident("b", "firing", 100);
    // a: firing then resolved on one stage, firing on another; b: firing.
    let notes = [
        notification(&a, "p.alert", "firing"),
        notification(&a, "p.alert", "resolved"),
        notification(&a, "p.page", "firing"),
        notification(&b, "p.alert", "firing"),
    ];
    s.record_respond(&[a.clone(), b.clone()], &notes, &[]).await.unwrap();
    let now = vigil::time::now_ms();
    let due = |rows: Vec<OutboxRow>| rows.into_iter().map(|r| r.notification.dedupe).collect::<Vec<_>>();
    let first = s.due_notifications(now, 100).await.unwrap();
    assert_eq!(
        due(first.clone()),
        ["a/p.alert/firing", "a/p.page/firing", "b/p.alert/firing"],
        "only the oldest of each (incident, stage)"
    );
    assert_eq!(due(s.due_notifications(now, 2).await.unwrap()).len(), 2, "limited");
    assert!(s.due_notifications(now - 60_000, 100).await.unwrap().is_empty(), "not due before it was enqueued");
    // a's firing waits for a retry: its resolved does not overtake it.
    let id = first[0].id;
    s.reschedule_notification(id, 1, now + 60_000, "503").await.unwrap();
    assert_eq!(due(s.due_notifications(now, 100).await.unwrap()), ["a/p.page/firing", "b/p.alert/firing"]);
    let row = s.outbox_of("a").await.unwrap().into_iter().find(|r| r.id == id).unwrap();
    assert_eq!(
        (row.attempts, row.next_attempt_at, row.last_error.as_deref(), row.status.as_str()),
        (1, now + 60_000, Some("503"), "pending")
    );
    assert_eq!(due(s.due_notifications(now + 60_000, 100).await.unwrap())[0], "a/p.alert/firing");
    // Sent: the next of its (incident, stage) is due.
    s.finish_notification(id, "sent", None, &audit("a", "sent", now)).await.unwrap();
    assert_eq!(due(s.due_notifications(now, 100).await.unwrap()), ["a/p.alert/resolved", "a/p.page/firing", "b/p.alert/firing"]);
}

async fn outbox_listing_and_depth(s: S) {
    assert_eq!(s.outbox_depth().await.unwrap(), (0, None));
    let a = incident("a", "firing", 100);
    let b = incident("b", "firing", 100);
    let before = vigil::time::now_ms();
    s.record_respond(std::slice::from_ref(&a), &[notification(&a, "p.alert", "firing"), notification(&a, "p.alert", "resolved")], &[])
        .await
        .unwrap();
    s.record_respond(std::slice::from_ref(&b), &[notification(&b, "p.alert", "firing")], &[]).await.unwrap();
    let all = s.outbox(10).await.unwrap();
    let names: Vec<&str> = all.iter().map(|r| r.notification.dedupe.as_str()).collect();
    assert_eq!(names, ["b/p.alert/firing", "a/p.alert/resolved", "a/p.alert/firing"], "newest first");
    assert!(all[0].id > all[1].id && all[1].id > all[2].id);
    assert_eq!(s.outbox(1).await.unwrap().len(), 1);
    let of_a: Vec<String> = s.outbox_of("a").await.unwrap().into_iter().map(|r| r.notification.transition).collect();
    assert_eq!(of_a, ["resolved", "firing"]);
    assert!(s.outbox_of("nope").await.unwrap().is_empty());
    let (depth, oldest) = s.outbox_depth().await.unwrap();
    assert_eq!(depth, 3);
    assert!(oldest.is_some_and(|t| t >= before && t <= vigil::time::now_ms()));
    // Finished rows leave the depth, whatever their outcome; the row keeps its error.
    let first = all[2].id;
    s.reschedule_notification(first, 1, 0, "timeout").await.unwrap();
    s.finish_notification(first, "failed", None, &audit("a", "failed", 1)).await.unwrap();
    s.finish_notification(all[0].id, "dry_run", Some("dry run"), &audit("b", "dry_run", 2)).await.unwrap();
    assert_eq!(s.outbox_depth().await.unwrap().0, 1);
    let row = s.outbox_of("a").await.unwrap().into_iter().find(|r| r.id == first).unwrap();
    assert_eq!(
        (row.status.as_str(), row.attempts, row.last_error.as_deref()),
        ("failed", 2, Some("timeout")),
        "COALESCE keeps the last error"
    );
    assert!(row.sent_at.is_some());
    let row = s.outbox_of("b").await.unwrap().remove(0);
    assert_eq!((row.status.as_str(), row.attempts, row.last_error.as_deref()), ("dry_run", 1, Some("dry run")));
    // Each outcome is audited with it.
    assert_eq!(s.audit_of("a").await.unwrap(), vec![audit("a", "failed", 1)]);
    assert_eq!(s.audit_of("b").await.unwrap(), vec![audit("b", "dry_run", 2)]);
}

async fn interrupted_sends(s: S) {
    let a = incident("a", "firing", 100);
    let b = incident("b", "firing", 100);
    s.record_respond(&[a.clone(), b.clone()], &[notification(&a, "p.alert", "firing"), notification(&b, "p.alert", "firing")], &[])
        .await
        .unwrap();
    assert!(s.interrupted_notifications(0, &[]).await.unwrap().is_empty());
    let rows = s.due_notifications(vigil::time::now_ms(), 10).await.unwrap();
    let (ra, rb) = (rows[0].id, rows[1].id);
    s.mark_started(ra, 5).await.unwrap();
    s.mark_started(rb, 6).await.unwrap();
    let ids = |rows: Vec<OutboxRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(s.interrupted_notifications(0, &[]).await.unwrap()), vec![ra, rb], "started, never finished");
    // A reschedule clears the mark; a finished send is not interrupted.
    s.reschedule_notification(ra, 1, 0, "retry").await.unwrap();
    assert_eq!(ids(s.interrupted_notifications(0, &[]).await.unwrap()), vec![rb]);
    s.finish_notification(rb, "sent", None, &audit("b", "sent", 7)).await.unwrap();
    assert!(s.interrupted_notifications(0, &[]).await.unwrap().is_empty());
}

async fn silences(s: S) {
    assert!(s.silences().await.unwrap().is_empty());
    let one = s.insert_silence(&silence(0, "deploy")).await.unwrap();
    let two = s.insert_silence(&silence(0, "maintenance")).await.unwrap();
    assert!(one > 0 && two > one);
    // Replaced by id.
    assert_eq!(s.insert_silence(&silence(one, "deploy, longer")).await.unwrap(), one);
    let got = s.silences().await.unwrap();
    assert_eq!(got, vec![silence(one, "deploy, longer"), silence(two, "maintenance")], "in id order, ids from the store");
    // An id given by hand (beyond the last): the next new one does not collide with it.
    assert_eq!(s.insert_silence(&silence(two + 10, "by hand")).await.unwrap(), two + 10);
    let next = s.insert_silence(&silence(0, "after")).await.unwrap();
    assert!(next > two + 10, "{next}");
    assert_eq!(s.silences().await.unwrap().len(), 4);
}

async fn feedback(s: S) {
    let a = incident("a", "firing", 100);
    s.record_respond(std::slice::from_ref(&a), &[], &[]).await.unwrap();
    let verdict = |incident: &str, v: Verdict, at: i64| FeedbackRecord {
        id: 0,
        incident: incident.into(),
        pipeline: "p".into(),
        stage: if incident.is_empty() { String::new() } else { "p.alert".into() },
        series: vec!["cpu".into()],
        from: 1,
        to: 2,
        verdict: v,
        note: Some("note".into()),
        by: "me".into(),
        at,
    };
    let mut changed = a.clone();
    changed.feedback = Some("false_positive".into());
    let f1 = s.record_feedback(&verdict("a", Verdict::FalsePositive, 10), Some(&changed), &audit("a", "feedback", 10)).await.unwrap();
    let f2 = s.record_feedback(&verdict("", Verdict::Missed, 20), None, &audit("p.missed", "feedback", 20)).await.unwrap();
    assert!(f1 > 0 && f2 > f1);
    let all = s.feedback().await.unwrap();
    assert_eq!(
        all,
        vec![
            FeedbackRecord { id: f1, ..verdict("a", Verdict::FalsePositive, 10) },
            FeedbackRecord { id: f2, ..verdict("", Verdict::Missed, 20) }
        ]
    );
    // With the incident it changes and its audit record, together.
    assert_eq!(s.incidents(None, 10).await.unwrap(), vec![changed]);
    assert_eq!(s.audit_of("a").await.unwrap(), vec![audit("a", "feedback", 10)]);
    assert_eq!(s.audit_of("p.missed").await.unwrap().len(), 1);
}

/// Writers at once (the engine's ticks, the dispatcher and the API share the store):
/// nothing lost, nothing doubled.
async fn concurrent_writers(s: S) {
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..25 {
                let i = incident(&format!("t{t}-{n}"), "firing", n);
                // Every task also enqueues the same shared notification: one row in all.
                let shared = notification(&incident("shared", "firing", 0), "p.alert", "firing");
                s.record_respond(std::slice::from_ref(&i), &[notification(&i, "p.alert", "firing"), shared], &[audit(&i.id, "opened", n)])
                    .await
                    .unwrap();
                s.save_cursors(&[(format!("c{t}"), n.to_string())]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.incidents(None, 1000).await.unwrap().len(), 200);
    assert_eq!(s.outbox(1000).await.unwrap().len(), 201);
    assert_eq!(s.outbox_depth().await.unwrap().0, 201);
    assert_eq!(s.load_cursor("c7").await.unwrap().as_deref(), Some("24"));
}

/// Each behaviour above, as a test on each store.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = TempDir::new(concat!("store-", stringify!($name)));
                    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    on_postgres(|url| async move {
                        let store = Arc::new(PostgresStore::connect(&url).await.unwrap());
                        super::$name(store.clone()).await;
                        store.close().await;
                    })
                    .await;
                }
            )*
        }
    };
}

suite!(
    cursors,
    runs,
    models,
    incidents_and_audit,
    outbox_dedupe,
    outbox_order,
    outbox_listing_and_depth,
    interrupted_sends,
    silences,
    feedback,
    concurrent_writers,
);

// ---------------------------------------------------------------- reopening

async fn fill(s: &dyn Store) {
    let a = incident("a", "firing", 100);
    s.record_respond(std::slice::from_ref(&a), &[notification(&a, "p.alert", "firing")], &[audit("a", "opened", 100)]).await.unwrap();
    s.save_cursors(&[("p.raw".into(), "c".into())]).await.unwrap();
    s.insert_silence(&silence(0, "kept")).await.unwrap();
}

async fn check_filled(s: &dyn Store) {
    assert_eq!(s.incidents(None, 10).await.unwrap(), vec![incident("a", "firing", 100)]);
    assert_eq!(s.outbox(10).await.unwrap().len(), 1);
    assert_eq!(s.load_cursor("p.raw").await.unwrap().as_deref(), Some("c"));
    assert_eq!(s.silences().await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_keeps_everything_across_a_reopen_and_refuses_a_newer_schema() {
    let dir = TempDir::new("store-reopen");
    let s = SqliteStore::open(dir.path()).await.unwrap();
    fill(&s).await;
    s.close().await;
    let s = SqliteStore::open(dir.path()).await.unwrap();
    check_filled(&s).await;
    s.close().await;
    // `sqlite://PATH` opens the same file.
    let url = vigil::store::StoreUrl::parse(Some(&format!("sqlite://{}", dir.join("state.db").display())), dir.path()).unwrap();
    let s = vigil::store::open(&url).await.unwrap();
    check_filled(&*s).await;
    drop(s);
    // A database written by a newer vigil.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("state.db").display())).await.unwrap();
    sqlx::query("UPDATE meta SET value = '99' WHERE key = 'schema_version'").execute(&pool).await.unwrap();
    pool.close().await;
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 99, known: 1, .. }), "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn postgres_keeps_everything_across_a_reopen_and_migrates_once() {
    on_postgres(|url| async move {
        let s = PostgresStore::connect(&url).await.unwrap();
        fill(&s).await;
        s.close().await;
        // Stores opening at once (nodes starting together): the migration runs once.
        let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        check_filled(&a).await;
        check_filled(&b).await;
        let applied: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version").fetch_all(a.pool()).await.unwrap();
        assert_eq!(applied, vec![(1, true), (2, true)]);
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn postgres_refuses_a_newer_schema_and_leaves_it_alone() {
    on_postgres(|url| async move {
        let s = PostgresStore::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
        )
        .execute(s.pool())
        .await
        .unwrap();
        s.close().await;
        let err = PostgresStore::connect(&url).await.unwrap_err();
        assert!(matches!(err, StoreError::NewerSchema { found: 9999, known: 2, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("newer") && text.contains(&vigil::store::redact(&url)), "{text}");
        // Nothing was changed: the future migration is still there.
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&mut conn).await.unwrap();
        assert_eq!(n, 3);
        let _ = conn.close().await;
    })
    .await;
}

#[tokio::test]
async fn postgres_errors_name_the_url_without_its_password() {
    let base = pg_url();
    let missing = with_database(&base, "vigil_no_such_database");
    let no_role = {
        let rest = base.find("://").unwrap() + 3;
        let at = base[rest..].find('@').map_or(rest, |i| rest + i + 1);
        format!("postgres://vigil_no_such_role:hunter2@{}", &base[at..])
    };
    let cases = [
        ("postgres://vigil:hunter2@127.0.0.1:1/test", "refused"),
        (missing.as_str(), "does not exist"),
        (no_role.as_str(), "vigil_no_such_role"),
        ("postgres://vigil:hunter2@127.0.0.1:notaport/test", "cannot open"),
    ];
    for (url, want) in cases {
        let err = PostgresStore::connect(url).await.unwrap_err().to_string();
        assert!(err.contains(want), "{url}: {err}");
        assert!(err.contains("cannot open the state database"), "{err}");
        assert!(!err.contains("hunter2"), "the password is printed: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[tokio::test]
async fn one_engine_per_postgres_database() {
    on_postgres(|url| async move {
        let a = PostgresStore::connect(&url).await.unwrap();
        let b = PostgresStore::connect(&url).await.unwrap();
        let lock = a.lock_engine().await.unwrap();
        let err = b.lock_engine().await.unwrap_err().to_string();
        assert!(err.contains("another vigil is running") && err.contains("vigil (pid"), "{err}");
        drop(lock);
        // Released with its session: taken again (the server notices the closed socket).
        let again = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(l) = b.lock_engine().await {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the lock is released when its holder goes");
        drop(again);
        a.close().await;
        b.close().await;
    })
    .await;
}

// ---------------------------------------------------------------- vigil run --store

fn vigil_run(dir: &TempDir, state: &str, store: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.current_dir(dir.path())
        .args(["run", "resp.vigil", "--state", state, "--no-watch", "--store", store])
        .env("NO_COLOR", "1")
        .env("VIGIL_API_TOKEN", "test-token-0123")
        .env_remove("VIGIL_STORE");
    c
}

/// Rows a minute apart ending now: 10, then a spike at 100, then 10 again.
fn rows() -> String {
    let start = vigil::time::now_ms() - 30 * 60_000;
    let mut out = String::from("timestamp,value\n");
    for i in 0..30 {
        let v = if (10..15).contains(&i) { 100 } else { 10 };
        out.push_str(&format!("{},{v}\n", vigil::time::format_timestamp(start + i * 60_000)));
    }
    out
}

#[test]
fn run_with_a_postgres_store_keeps_incidents_and_outbox_there_across_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (name, url) = rt.block_on(create_database());
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let dir = TempDir::new("store-run-pg");
        std::fs::write(
            dir.join("resp.vigil"),
            "pipeline resp {\n  every 200ms\n  collect raw = csv(path: \"data.csv\")\n  predict hot = threshold(raw, above: 90.0)\n  respond out = log(hot)\n}\n",
        )
        .unwrap();
        // The first engine: the data appears after its first tick (read from its start).
        let log = dir.join("stderr-1.log");
        let (child, port) = spawn_engine(
            vigil_run(&dir, "state-1", &url).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()),
            dir.path(),
            Some(&log),
        );
        let mut first = Engine { child: Some(child), port, dir: dir.path().to_path_buf() };
        first.wait_first_tick();
        std::fs::write(dir.join("data.csv"), rows()).unwrap();
        let resolved = first.wait_incident("resolved");
        let id = resolved["id"].as_str().unwrap().to_owned();
        first.wait_settled(&id, 2);
        // In PostgreSQL: one incident, its two notifications sent, their audit.
        let counts = || {
            rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                let q = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
                let got = (
                    q("SELECT COUNT(*) FROM incidents").fetch_one(&mut c).await.unwrap(),
                    q("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetch_one(&mut c).await.unwrap(),
                    q("SELECT COUNT(*) FROM outbox").fetch_one(&mut c).await.unwrap(),
                    q("SELECT COUNT(*) FROM audit WHERE event = 'sent'").fetch_one(&mut c).await.unwrap(),
                    q("SELECT COUNT(*) FROM runs").fetch_one(&mut c).await.unwrap(),
                );
                let _ = c.close().await;
                got
            })
        };
        let (incidents, sent, outbox, audited, ticks) = counts();
        assert_eq!((incidents, sent, outbox, audited), (1, 2, 2, 2), "in PostgreSQL");
        assert!(ticks > 0);
        assert!(!dir.join("state-1/state.db").exists(), "nothing in a SQLite file");
        // A second engine on the same database (another state directory) is refused
        // before it starts anything.
        let out = vigil_run(&dir, "state-2", &url).args(["--listen", "127.0.0.1:0"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("another vigil is running on the state database"), "{err}");
        first.kill9();

        // The restart (another state directory: everything is in PostgreSQL): the
        // incident is there, the data is not read again, nothing is sent twice.
        let log = dir.join("stderr-2.log");
        let (child, port) = spawn_engine(
            vigil_run(&dir, "state-2", &url).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()),
            dir.path(),
            Some(&log),
        );
        let second = Engine { child: Some(child), port, dir: dir.path().to_path_buf() };
        let before = second.ticks();
        wait_for("three more ticks", Duration::from_secs(30), || (second.ticks() >= before + 3).then_some(()));
        let incidents = second.incidents();
        assert_eq!(incidents.len(), 1, "{incidents:?}");
        assert_eq!(incidents[0]["id"], id.as_str());
        assert_eq!(second.incident(&id)["notifications"].as_array().map(Vec::len), Some(2));
        let (incidents, sent, outbox, audited, _) = counts();
        assert_eq!((incidents, sent, outbox, audited), (1, 2, 2, 2), "nothing doubled");
    }));
    rt.block_on(drop_database(&name));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn run_refuses_a_bad_store_before_starting_anything() {
    let dir = TempDir::new("store-run-bad");
    std::fs::write(
        dir.join("resp.vigil"),
        "pipeline resp {\n  every 1s\n  collect raw = csv(path: \"data.csv\")\n  predict hot = threshold(raw, above: 90.0)\n  respond out = log(hot)\n}\n",
    )
    .unwrap();
    let missing = with_database(&pg_url(), "vigil_no_such_database");
    let cases = [
        ("postgres://vigil:hunter2@127.0.0.1:1/test", "refused"),
        (missing.as_str(), "does not exist"),
        ("mysql://vigil:hunter2@127.0.0.1/test", "not a store URL"),
    ];
    for (url, want) in cases {
        let out = vigil_run(&dir, "state", url).args(["--listen", "127.0.0.1:0", "--addr-file", "vigil.addr"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains(want), "{url}: {err}");
        assert!(!err.contains("hunter2"), "the password is printed: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "one error line: {err}");
        assert!(!dir.join("vigil.addr").exists(), "nothing started");
    }
    // The password never reaches the help either (VIGIL_STORE's value is hidden).
    let out =
        Command::new(env!("CARGO_BIN_EXE_vigil")).args(["run", "--help"]).env("VIGIL_STORE", "postgres://u:hunter2@h/d").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--store <URL>") && !help.contains("hunter2"), "{help}");
}

// ---------------------------------------------------------------- a measurement

/// Outbox throughput on each store (BENCHMARKS.md): enqueue N notifications in batches of
/// 100 (one `record_respond` each, as a tick does), then drain them as the dispatcher
/// does — `due_notifications(now, 16)`, then per row `mark_started` and
/// `finish_notification` — one row at a time, then 16 rows at once (the dispatcher's
/// concurrency). Run by hand:
/// `cargo test --test store -- --ignored --nocapture outbox_throughput`.
#[test]
#[ignore = "a measurement, not a check: run it by hand (see BENCHMARKS.md)"]
fn outbox_throughput() {
    const N: usize = 4_000;
    async fn enqueue(s: &S, from: usize) -> f64 {
        let incidents: Vec<Incident> = (from..from + N).map(|n| incident(&format!("i{n}"), "firing", n as i64)).collect();
        let notes: Vec<Notification> = incidents.iter().map(|i| notification(i, "p.alert", "firing")).collect();
        let t = std::time::Instant::now();
        for (i, n) in incidents.chunks(100).zip(notes.chunks(100)) {
            let audits: Vec<AuditRecord> = i.iter().map(|i| audit(&i.id, "queued", 1)).collect();
            s.record_respond(i, n, &audits).await.unwrap();
        }
        N as f64 / t.elapsed().as_secs_f64()
    }
    async fn send(s: &S, row: &OutboxRow) {
        s.mark_started(row.id, vigil::time::now_ms()).await.unwrap();
        s.finish_notification(row.id, "sent", None, &audit(&row.notification.incident_id, "sent", 2)).await.unwrap();
    }
    async fn drain(s: &S, concurrent: bool) -> f64 {
        let t = std::time::Instant::now();
        let mut sent = 0;
        loop {
            let due = s.due_notifications(vigil::time::now_ms(), 16).await.unwrap();
            if due.is_empty() {
                break;
            }
            sent += due.len();
            if concurrent {
                futures_util::future::join_all(due.iter().map(|row| send(s, row))).await;
            } else {
                for row in &due {
                    send(s, row).await;
                }
            }
        }
        assert_eq!(sent, N);
        N as f64 / t.elapsed().as_secs_f64()
    }
    async fn measure(name: &str, s: S) {
        let queued = enqueue(&s, 0).await;
        let one = drain(&s, false).await;
        enqueue(&s, N).await;
        let many = drain(&s, true).await;
        println!("{name}: enqueue {queued:.0}/s; drain one at a time {one:.0}/s, 16 at once {many:.0}/s ({N} notifications)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = TempDir::new("store-bench");
        let sqlite = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        measure("sqlite", sqlite.clone()).await;
        sqlite.close().await;
        on_postgres(|url| async move {
            let pg = Arc::new(PostgresStore::connect(&url).await.unwrap());
            measure("postgres", pg.clone()).await;
            pg.close().await;
        })
        .await;
    });
}
