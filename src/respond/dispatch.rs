//! The outbox dispatcher: sends what the outbox holds, oldest first.
//!
//! A notification stays `pending` until its channel delivered it; then it is marked
//! `sent` (or `dry_run`). A failure worth retrying is retried after 1 s, 2 s, 4 s, … (at
//! most 5 minutes apart, at most [`MAX_ATTEMPTS`] times); a failure that a retry cannot
//! fix marks it `failed`. Every outcome goes to the audit trail.
//!
//! **Delivery is at-least-once, and only what was in flight can repeat.** Each send is
//! marked as started in the store before it begins. After a crash or `kill -9`, the rows
//! still pending are sent when the engine starts again, so nothing is lost; the rows
//! whose send had started (at most [`CONCURRENCY`]) are the only ones a receiver can see
//! twice, each with the same idempotency key (PagerDuty `dedup_key`, Alertmanager's
//! labels, the email Message-ID, the webhook `X-Vigil-Delivery` header).
//!
//! **Several nodes** (a cluster, docs/cluster.md): each node's dispatcher asks for the
//! due rows of the respond stages it runs ([`super::store::OutboxStore::claim_due`]); the
//! shared store claims them for it, so no other dispatcher takes them until the claim
//! expires, and a send starts only under the node's unexpired claim. A row whose node died
//! before its send started is claimed again after the claim's timeout; one whose send had
//! started is recovered as after a crash (below) by one of the nodes running its stage:
//! sent again with the same idempotency key, or, for a remediation, marked `unknown` and
//! not run again.
//!
//! **Remediation is at-most-once.** An `exec` command whose run was interrupted by a
//! crash is not started again — its outcome is unknown, so the row is marked `unknown`
//! and audited (`interrupted`) — unless its stage says `retry_on_crash: true`. The
//! command runs in its own process group, which dies with the engine.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::channels::Outcome;
use super::{AuditRecord, OutboxRow, Responder};

/// Attempts before a notification is given up (`failed`).
pub const MAX_ATTEMPTS: u32 = 30;
/// Rows fetched per round.
const BATCH: i64 = 200;

/// The delay before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> i64 {
    (1000i64 << attempts.min(9)).min(300_000)
}

/// Where the dispatcher reports each outcome: (stage, channel, result) — the engine counts
/// them in `vigil_notifications_total`.
pub type Report = Arc<dyn Fn(&str, &str, &str) + Send + Sync>;

/// Notifications in flight at once. Rows of different incidents (or channels) go out
/// concurrently, and new rows are picked up while slow sends are still waiting, so a
/// receiver that hangs until its timeout holds up only its own notifications. One
/// incident's rows on one channel go in order (the store offers only the oldest pending).
pub const CONCURRENCY: usize = 16;

/// Runs until `cancel`: sends every due row, waking when something is enqueued, a send
/// finishes, or every 500 ms.
pub async fn run(responder: Arc<Responder>, cancel: CancellationToken, report: Report) {
    let Some(store) = responder.store().cloned() else { return };
    let mut in_flight: tokio::task::JoinSet<bool> = tokio::task::JoinSet::new();
    // Rows being sent, and rows fetched but not started yet (the store is asked again only
    // when these run out: each question scans the outbox).
    let mut sending: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut queued: std::collections::VecDeque<OutboxRow> = std::collections::VecDeque::new();
    let finished = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let mut recovered: Option<std::time::Instant> = None;
    loop {
        for id in finished.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            sending.remove(&id);
        }
        // The rows of the respond stages this engine runs (in a cluster, claimed for it).
        let stages = || -> Vec<String> { responder.channels.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect() };
        // Sends interrupted by a crash: at start (this engine's last run) and then every
        // RECOVER_EVERY (in a cluster, another node's whose claim expired).
        if recovered.is_none_or(|t| t.elapsed() >= RECOVER_EVERY) {
            recover_interrupted(&responder, store.as_ref(), &report, &stages(), &sending).await;
            responder.changed();
            recovered = Some(std::time::Instant::now());
        }
        if queued.is_empty() && in_flight.len() < CONCURRENCY {
            let stages = stages();
            match store.claim_due(crate::time::now_ms(), BATCH, &stages).await {
                Ok(due) => queued.extend(due.into_iter().filter(|r| !sending.contains(&r.id))),
                Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
            }
        }
        while in_flight.len() < CONCURRENCY {
            let Some(row) = queued.pop_front() else { break };
            sending.insert(row.id);
            let (responder, store, finished, report) = (responder.clone(), store.clone(), finished.clone(), report.clone());
            in_flight.spawn(async move {
                let id = row.id;
                let done = deliver(&responder, store.as_ref(), row, &report).await;
                responder.changed();
                finished.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                done
            });
        }
        if cancel.is_cancelled() {
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            // A send finished: the next notification of its incident may be due.
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = responder.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    // Give the sends under way a moment to finish, then stop them: a row is marked only
    // after its channel answered, so a stopped one stays pending and goes out after the
    // restart (as after a crash).
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while in_flight.join_next().await.is_some() {} }).await;
    in_flight.abort_all();
    // In a cluster, what this node claimed and did not start is another node's to send
    // now, not when the claim expires.
    match tokio::time::timeout(Duration::from_secs(2), store.release_claims()).await {
        Ok(Ok(n)) if n > 0 => tracing::info!(notifications = n, "outbox rows claimed but not sent handed back to the other nodes"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot hand back the outbox rows claimed but not sent: another node sends them when the claim expires")
        }
        _ => {}
    }
}

/// How often the dispatcher looks for sends interrupted by a crash (after the first look,
/// at start): in a cluster, those of a node that died mid-send, once its claim expired.
const RECOVER_EVERY: Duration = Duration::from_secs(5);

/// The sends a crash interrupted (not those of `sending`, this dispatcher's own in
/// flight): re-sent (at-least-once), except remediations, which are marked `unknown`
/// unless their stage retries on crash (at-most-once).
async fn recover_interrupted(
    responder: &Responder,
    store: &dyn super::store::RespondStore,
    report: &Report,
    stages: &[String],
    sending: &std::collections::HashSet<i64>,
) {
    let now = crate::time::now_ms();
    let rows = match store.interrupted_notifications(now, stages).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            return;
        }
    };
    for row in rows.into_iter().filter(|r| !sending.contains(&r.id)) {
        let n = &row.notification;
        let retry = if n.channel == "exec" {
            let channels = responder.channels.read().unwrap_or_else(|e| e.into_inner());
            channels.get(&n.stage).is_some_and(|c| c.kind.retries_on_crash())
        } else {
            true
        };
        let audit = |detail: String| AuditRecord {
            ts: now,
            incident_id: n.incident_id.clone(),
            stage: n.stage.clone(),
            event: "interrupted".into(),
            detail: format!("{} {}: {detail}", n.channel, n.transition),
        };
        let result = if retry {
            tracing::warn!(incident = %n.incident_id, channel = %n.channel, transition = %n.transition, "a send was in flight when its engine stopped: sending it again (same idempotency key)");
            let a = audit(
                "in flight when the engine stopped; sent again (the receiver may see it twice, with the same idempotency key)".into(),
            );
            match store.reschedule_notification(row.id, row.attempts, now, "interrupted by a stop of the engine").await {
                Ok(()) => store.audit(&a).await,
                Err(e) => Err(e),
            }
        } else {
            tracing::warn!(incident = %n.incident_id, stage = %n.stage, transition = %n.transition, "a remediation was running when its engine stopped: its outcome is unknown and it is not run again (set retry_on_crash to re-run it)");
            report(&n.stage, &n.channel, "unknown");
            let why = "the engine stopped while the command ran: outcome unknown; not run again (retry_on_crash: true re-runs it)";
            store.finish_notification(row.id, "unknown", Some(why), &audit(why.into())).await
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot update the outbox");
        }
    }
}

/// Sends one row and records the outcome: sent, rescheduled with backoff, or failed.
/// Returns whether the row left the outbox (sent or failed for good).
async fn deliver(responder: &Responder, store: &dyn super::store::RespondStore, row: OutboxRow, report: &Report) -> bool {
    let now = crate::time::now_ms();
    let n = &row.notification;
    let channel = responder.channels.read().unwrap_or_else(|e| e.into_inner()).get(&n.stage).cloned();
    let Some(channel) = channel else {
        // The stage is gone (or not built yet): keep the row for when it returns.
        let _ = store.reschedule_notification(row.id, row.attempts, now + 10_000, "the respond stage is not running").await;
        return false;
    };
    let (status, outcome) = if responder.dry_run {
        println!("[dry-run] {}", channel.describe(n));
        ("dry_run", Outcome::Sent("dry run: not sent".into()))
    } else {
        match store.mark_started(row.id, now).await {
            Ok(()) => {}
            // A cluster: this node was paused past its claim; the row is another node's.
            Err(e @ crate::persist::StoreError::ClaimLost { .. }) => {
                tracing::warn!(incident = %n.incident_id, stage = %n.stage, error = %e, "not sending: the claim expired");
                return false;
            }
            Err(e) => {
                // Not sending what could not be marked: a crash could repeat it unnoticed.
                tracing::error!(error = %e, "cannot update the outbox");
                return false;
            }
        }
        let o = channel.send(n).await;
        (if matches!(o, Outcome::Sent(_)) { "sent" } else { "pending" }, o)
    };
    let now = crate::time::now_ms();
    let audit = |event: &str, detail: String| AuditRecord {
        ts: now,
        incident_id: n.incident_id.clone(),
        stage: n.stage.clone(),
        event: event.into(),
        detail: format!("{} {}: {detail}", n.channel, n.transition),
    };
    let done = !matches!(outcome, Outcome::Retry(_)) || row.attempts + 1 >= MAX_ATTEMPTS;
    let result = match outcome {
        Outcome::Sent(detail) => {
            report(&n.stage, &n.channel, status);
            tracing::info!(
                incident = %n.incident_id,
                stage = %n.stage,
                channel = %n.channel,
                destination = %channel.kind.destination(),
                transition = %n.transition,
                attempt = row.attempts + 1,
                "notification {}", if status == "dry_run" { "printed (dry run)" } else { "sent" }
            );
            store.finish_notification(row.id, status, None, &audit(if status == "dry_run" { "dry_run" } else { "sent" }, detail)).await
        }
        Outcome::Retry(why) if row.attempts + 1 < MAX_ATTEMPTS => {
            let wait = backoff(row.attempts);
            report(&n.stage, &n.channel, "retried");
            tracing::warn!(
                incident = %n.incident_id,
                stage = %n.stage,
                channel = %n.channel,
                destination = %channel.kind.destination(),
                transition = %n.transition,
                attempt = row.attempts + 1,
                retry_in_ms = wait,
                "notification failed, will retry: {why}"
            );
            match store.reschedule_notification(row.id, row.attempts + 1, now + wait, &why).await {
                Ok(()) => store.audit(&audit("retried", format!("attempt {}: {why}", row.attempts + 1))).await,
                Err(e) => Err(e),
            }
        }
        Outcome::Retry(why) | Outcome::Fail(why) => {
            report(&n.stage, &n.channel, "failed");
            tracing::error!(
                incident = %n.incident_id,
                stage = %n.stage,
                channel = %n.channel,
                destination = %channel.kind.destination(),
                transition = %n.transition,
                attempt = row.attempts + 1,
                "notification failed for good: {why}"
            );
            store.finish_notification(row.id, "failed", Some(&why), &audit("failed", why.clone())).await
        }
    };
    match result {
        Ok(()) => done,
        Err(e) => {
            tracing::error!(error = %e, "cannot update the outbox");
            false
        }
    }
}
