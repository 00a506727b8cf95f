//! The outbox dispatcher: sends what the outbox holds, oldest first.
//!
//! A notification stays `pending` until its channel delivered it; then it is marked
//! `sent` (or `dry_run`). A failure worth retrying is retried after 1 s, 2 s, 4 s, … (at
//! most 5 minutes apart, at most [`MAX_ATTEMPTS`] times); a failure that a retry cannot
//! fix marks it `failed`. Every outcome goes to the audit trail. After a crash or a
//! `kill -9`, the pending rows are sent when the engine starts again — and since a row
//! is only marked sent after its channel accepted it, nothing is lost (a crash in the
//! instant between the receiver's acceptance and the mark can repeat one delivery; email
//! carries a stable Message-ID and webhooks an `X-Vigil-Delivery` id for receivers to
//! drop such a repeat).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::channels::Outcome;
use futures_util::StreamExt;

use super::{AuditRecord, OutboxRow, Responder};

/// Attempts before a notification is given up (`failed`).
pub const MAX_ATTEMPTS: u32 = 30;
/// Rows fetched per round.
const BATCH: i64 = 200;

/// The delay before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> i64 {
    (1000i64 << attempts.min(9)).min(300_000)
}

/// Notifications in flight at once: rows of different incidents go out concurrently (a
/// slow receiver does not hold up the others); one incident's rows go in order.
pub const CONCURRENCY: usize = 16;

/// Runs until `cancel`: waits for work (or 1 s), sends every due row.
pub async fn run(responder: Arc<Responder>, cancel: CancellationToken) {
    let Some(store) = responder.store().cloned() else { return };
    loop {
        let now = crate::time::now_ms();
        let due = match store.due_notifications(now, BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        let full = due.len() as i64 == BATCH;
        // One queue per incident, in outbox order.
        let mut queues: Vec<(String, Vec<OutboxRow>)> = Vec::new();
        for row in due {
            match queues.iter_mut().find(|(id, _)| *id == row.notification.incident_id) {
                Some((_, q)) => q.push(row),
                None => queues.push((row.notification.incident_id.clone(), vec![row])),
            }
        }
        let progress = std::sync::atomic::AtomicBool::new(false);
        futures_util::stream::iter(queues)
            .for_each_concurrent(CONCURRENCY, |(_, rows)| {
                let (responder, store, cancel, progress) = (&responder, &store, &cancel, &progress);
                async move {
                    for row in rows {
                        if cancel.is_cancelled() {
                            return;
                        }
                        if deliver(responder, store.as_ref(), row).await {
                            progress.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
            .await;
        if cancel.is_cancelled() {
            return;
        }
        // Something went out: the next of its incident's notifications may be due now.
        if full || progress.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = responder.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Sends one row and records the outcome: sent, rescheduled with backoff, or failed.
/// Returns whether the row left the outbox (sent or failed for good).
async fn deliver(responder: &Responder, store: &dyn crate::store::Store, row: OutboxRow) -> bool {
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
            tracing::debug!(stage = %n.stage, channel = %n.channel, transition = %n.transition, incident = %n.incident_id, "sent");
            store.finish_notification(row.id, status, None, &audit(if status == "dry_run" { "dry_run" } else { "sent" }, detail)).await
        }
        Outcome::Retry(why) if row.attempts + 1 < MAX_ATTEMPTS => {
            let wait = backoff(row.attempts);
            tracing::warn!(stage = %n.stage, channel = %n.channel, attempt = row.attempts + 1, retry_in_ms = wait, "notification failed: {why}");
            match store.reschedule_notification(row.id, row.attempts + 1, now + wait, &why).await {
                Ok(()) => store.audit(&audit("retried", format!("attempt {}: {why}", row.attempts + 1))).await,
                Err(e) => Err(e),
            }
        }
        Outcome::Retry(why) | Outcome::Fail(why) => {
            tracing::error!(stage = %n.stage, channel = %n.channel, incident = %n.incident_id, "notification failed for good: {why}");
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
