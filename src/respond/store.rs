//! What responding keeps in the state store: incidents with their audit trail, the
//! notification outbox, silences and on-call's verdicts. The responder and the dispatcher
//! hold these seams; [`crate::store`] implements them.

use super::{AuditRecord, Incident, Notification, OutboxRow, Silence};
use crate::feedback::FeedbackRecord;
use crate::persist::{BoxFuture, StoreError};

/// Incidents and their audit trail.
pub trait IncidentStore: Send + Sync {
    /// Records incident changes, notifications to send (a notification whose `dedupe`
    /// key is already in the outbox is not added again) and audit records, in one
    /// transaction.
    fn record_respond<'a>(
        &'a self,
        incidents: &'a [Incident],
        notifications: &'a [Notification],
        audit: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Incidents (of one status, or all), newest first.
    fn incidents<'a>(&'a self, status: Option<&'a str>, limit: i64) -> BoxFuture<'a, Result<Vec<Incident>, StoreError>>;
    /// Incidents opened at or after `since`, oldest first (for reports).
    fn incidents_since(&self, since: i64) -> BoxFuture<'_, Result<Vec<Incident>, StoreError>>;
    /// Appends an audit record.
    fn audit<'a>(&'a self, record: &'a AuditRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The audit trail of an incident, oldest first.
    fn audit_of<'a>(&'a self, incident: &'a str) -> BoxFuture<'a, Result<Vec<AuditRecord>, StoreError>>;
    /// Audit records of `events` at or after `since`, oldest first (for reports).
    fn audit_since<'a>(&'a self, since: i64, events: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<AuditRecord>, StoreError>>;
}

/// The durable outbox: notifications written before they are sent.
pub trait OutboxStore: Send + Sync {
    /// Pending notifications due at `now`, oldest first — only the oldest pending one of
    /// each (incident, stage), so that one incident's notifications reach a channel in
    /// order (a `resolved` never overtakes its `firing` while that waits for a retry).
    fn due_notifications<'a>(&'a self, now: i64, limit: i64) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>>;
    /// Like [`OutboxStore::due_notifications`], for a dispatcher that can send only the
    /// rows of `stages` (the respond stages its engine runs). A store that several nodes
    /// share claims the rows it returns for this node (until the claim expires, no other
    /// node's dispatcher gets them; a row whose claim expired — its node died — is
    /// claimed again), and returns only rows of `stages`. The default, for one node:
    /// [`OutboxStore::due_notifications`].
    fn claim_due<'a>(&'a self, now: i64, limit: i64, stages: &'a [String]) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        let _ = stages;
        self.due_notifications(now, limit)
    }
    /// Gives back the rows claimed for this node whose send has not started (a store
    /// shared by several nodes: the dispatcher stops, so another node's may take them at
    /// once instead of when the claim expires); how many. One node: nothing to do.
    fn release_claims(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }
    /// The outbox, newest first (all statuses).
    fn outbox<'a>(&'a self, limit: i64) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>>;
    /// The notifications of one incident, newest first (all statuses). The default reads
    /// the newest 10 000 of the outbox; a store with an index by incident overrides it.
    fn outbox_of<'a>(&'a self, incident: &'a str) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move { Ok(self.outbox(10_000).await?.into_iter().filter(|o| o.notification.incident_id == incident).collect()) })
    }
    /// Pending notifications: how many, and when the oldest was enqueued.
    fn outbox_depth(&self) -> BoxFuture<'_, Result<(i64, Option<i64>), StoreError>>;
    /// Records that a send of notification `id` starts now: a crash before its outcome is
    /// recorded leaves the mark, which [`OutboxStore::interrupted_notifications`] finds.
    /// A store shared by several nodes refuses ([`StoreError::ClaimLost`]) when this
    /// node's claim on the row has expired: not sending then is what keeps a node that
    /// was paused from sending what another node has taken.
    fn mark_started(&self, id: i64, now: i64) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Pending notifications whose send started and never finished, and whose sender is
    /// gone. One engine: every such row — in flight when the engine last stopped, or in
    /// flight now (the caller skips its own sends). A store shared by several nodes: the
    /// rows of `stages` whose claim expired at `now` (their node died or was cut off
    /// mid-send), claimed for this node, so that one node decides what becomes of each.
    fn interrupted_notifications<'a>(&'a self, now: i64, stages: &'a [String]) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>>;
    /// Keeps a notification pending for another attempt at `next` (clearing its start).
    fn reschedule_notification<'a>(&'a self, id: i64, attempts: u32, next: i64, why: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Marks a notification `sent`, `dry_run` or `failed`, with its audit record.
    fn finish_notification<'a>(
        &'a self,
        id: i64,
        status: &'a str,
        error: Option<&'a str>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Silences.
pub trait SilenceStore: Send + Sync {
    /// Every silence.
    fn silences(&self) -> BoxFuture<'_, Result<Vec<Silence>, StoreError>>;
    /// Adds a silence (id 0) or replaces one; returns its id.
    fn insert_silence<'a>(&'a self, s: &'a Silence) -> BoxFuture<'a, Result<i64, StoreError>>;
}

/// On-call's verdicts.
pub trait FeedbackStore: Send + Sync {
    /// Records a verdict (with the incident it changes, when it is about one, and its audit
    /// record) in one transaction; returns its id.
    fn record_feedback<'a>(
        &'a self,
        record: &'a FeedbackRecord,
        incident: Option<&'a Incident>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<i64, StoreError>>;
    /// Every verdict, oldest first.
    fn feedback(&self) -> BoxFuture<'_, Result<Vec<FeedbackRecord>, StoreError>>;
}

/// Everything responding keeps.
pub trait RespondStore: IncidentStore + OutboxStore + SilenceStore + FeedbackStore {}

impl<T: IncidentStore + OutboxStore + SilenceStore + FeedbackStore> RespondStore for T {}
