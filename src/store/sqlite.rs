//! The embedded store: [`SqliteStore`] keeps the state in one SQLite database file
//! (`STATE/state.db` by default, with sqlx) — the default of `vigil run`, for one node.
//! Its schema is created here, statement by statement (`CREATE … IF NOT EXISTS`), and
//! versioned in `meta.schema_version`; a database written by a newer vigil is refused.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use crate::feedback::FeedbackRecord;
use crate::learn::registry::{ModelEvent, ModelStore};
use crate::respond::store::{FeedbackStore, IncidentStore, OutboxStore, SilenceStore};
use crate::respond::{AuditRecord, Incident, Notification, OutboxRow, Silence};
use crate::runtime::state::{CursorStore, RunStore};

use super::{BoxFuture, ModelRow, RunRecord, StoreError};

/// Rows per multi-row INSERT (7 parameters each at most, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 200;

/// The embedded SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cursors (stage_key TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, version TEXT NOT NULL, \
     started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL, status TEXT NOT NULL, items INTEGER NOT NULL, error TEXT, failed_stage TEXT)",
    "CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, id)",
    "CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY AUTOINCREMENT, stage_key TEXT NOT NULL, series TEXT NOT NULL, \
     version INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, meta TEXT NOT NULL, created_at INTEGER NOT NULL, \
     active INTEGER NOT NULL DEFAULT 0, UNIQUE (stage_key, series, version))",
    "CREATE TABLE IF NOT EXISTS incidents (id TEXT PRIMARY KEY, stage TEXT NOT NULL, status TEXT NOT NULL, opened_at INTEGER NOT NULL, \
     data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS incidents_by_status ON incidents (status, opened_at)",
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe TEXT NOT NULL UNIQUE, incident_id TEXT NOT NULL, \
     stage TEXT NOT NULL, data TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL, \
     last_error TEXT, created_at INTEGER NOT NULL, sent_at INTEGER)",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbox_by_incident ON outbox (incident_id, stage, status, id)",
    "CREATE TABLE IF NOT EXISTS silences (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, incident_id TEXT NOT NULL, stage TEXT NOT NULL, \
     event TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_by_incident ON audit (incident_id, id)",
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (ts)",
    "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL, pipeline TEXT NOT NULL, \
     verdict TEXT NOT NULL, at INTEGER NOT NULL, data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS incidents_by_opened ON incidents (opened_at)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1')",
];

/// The schema version this binary writes (`meta.schema_version`).
pub const SCHEMA_VERSION: i64 = 1;

impl SqliteStore {
    /// Opens (creating if needed) `dir/state.db`, creating `dir` too.
    ///
    /// # Errors
    /// When the directory or database cannot be created or opened, or was written by a
    /// newer vigil ([`StoreError::NewerSchema`]).
    pub async fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_file(&dir.join("state.db")).await
    }

    /// Opens (creating if needed) the database file `path`, creating its directory too.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn open_file(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await.map_err(open_err)?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await?;
        }
        let found: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema_version'").fetch_one(&pool).await?;
        let found = found.trim().parse::<i64>().unwrap_or(i64::MAX);
        if found > SCHEMA_VERSION {
            pool.close().await;
            return Err(StoreError::NewerSchema { store: path.display().to_string(), found, known: SCHEMA_VERSION });
        }
        // Added after the first release: when a send started (a crash leaves it set).
        if let Err(e) = sqlx::query("ALTER TABLE outbox ADD COLUMN started_at INTEGER").execute(&pool).await {
            if !e.to_string().contains("duplicate column") {
                return Err(e.into());
            }
        }
        Ok(SqliteStore { pool })
    }

    /// Closes the pool, waiting for queries in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl CursorStore for SqliteStore {
    fn load_cursor<'a>(&'a self, stage: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT cursor FROM cursors WHERE stage_key = ?").bind(stage).fetch_optional(&self.pool).await?;
            Ok(row.map(|r| r.get::<String, _>(0)))
        })
    }

    fn save_cursors<'a>(&'a self, cursors: &'a [(String, String)]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if cursors.is_empty() {
                return Ok(());
            }
            let mut tx = self.pool.begin().await?;
            let now = crate::time::now_ms();
            for (k, c) in cursors {
                sqlx::query("INSERT INTO cursors (stage_key, cursor, updated_at) VALUES (?, ?, ?) ON CONFLICT(stage_key) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at")
                    .bind(k)
                    .bind(c)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

impl RunStore for SqliteStore {
    fn record_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO runs (pipeline, version, started_at, finished_at, status, items, error, failed_stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(&run.pipeline)
                .bind(&run.version)
                .bind(run.started_at)
                .bind(run.finished_at)
                .bind(&run.status)
                .bind(run.items)
                .bind(&run.error)
                .bind(&run.failed_stage)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn recent_runs<'a>(&'a self, pipeline: &'a str, limit: i64) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT pipeline, version, started_at, finished_at, status, items, error, failed_stage FROM runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?")
                .bind(pipeline)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| RunRecord {
                    pipeline: r.get(0),
                    version: r.get(1),
                    started_at: r.get(2),
                    finished_at: r.get(3),
                    status: r.get(4),
                    items: r.get(5),
                    error: r.get(6),
                    failed_stage: r.get(7),
                })
                .collect())
        })
    }
}

impl ModelStore for SqliteStore {
    fn insert_model<'a>(
        &'a self,
        meta: &'a crate::learn::ModelMeta,
        path: &'a str,
        activate: bool,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            let json = serde_json::to_string(meta).unwrap_or_default();
            let mut tx = self.pool.begin().await?;
            if activate {
                sqlx::query("UPDATE models SET active = 0 WHERE stage_key = ? AND series = ?")
                    .bind(&meta.key)
                    .bind(&meta.series)
                    .execute(&mut *tx)
                    .await?;
            }
            let id = sqlx::query(
                "INSERT INTO models (stage_key, series, version, kind, path, meta, created_at, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT(stage_key, series, version) DO UPDATE SET kind = excluded.kind, path = excluded.path, meta = excluded.meta, \
                 created_at = excluded.created_at, active = excluded.active RETURNING id",
            )
            .bind(&meta.key)
            .bind(&meta.series)
            .bind(i64::from(meta.version))
            .bind(&meta.kind)
            .bind(path)
            .bind(json)
            .bind(meta.created_at)
            .bind(i64::from(activate))
            .fetch_one(&mut *tx)
            .await?
            .get::<i64, _>(0);
            tx.commit().await?;
            Ok(id)
        })
    }

    fn models<'a>(&'a self, key: Option<&'a str>) -> BoxFuture<'a, Result<Vec<ModelRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, meta, path, active FROM models WHERE ? IS NULL OR stage_key = ? ORDER BY stage_key, series, version",
            )
            .bind(key)
            .bind(key)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let meta: crate::learn::ModelMeta = serde_json::from_str(&r.get::<String, _>(1)).ok()?;
                    Some(ModelRow { id: r.get(0), meta, path: r.get(2), active: r.get::<i64, _>(3) != 0 })
                })
                .collect())
        })
    }

    fn activate_model<'a>(&'a self, id: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // One statement: it takes the write lock before it reads, so a writer that
            // committed in between cannot make it fail (a read-then-write transaction
            // would get SQLITE_BUSY_SNAPSHOT, which no busy timeout retries).
            let done = sqlx::query(
                "UPDATE models SET active = (id = ?1) WHERE (stage_key, series) = (SELECT stage_key, series FROM models WHERE id = ?1)",
            )
            .bind(id)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn record_model_event<'a>(&'a self, event: &'a ModelEvent) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let record = AuditRecord {
                ts: event.ts,
                incident_id: event.subject(),
                stage: event.key.clone(),
                event: event.event.clone(),
                detail: event.detail.clone(),
            };
            self.audit(&record).await
        })
    }
}

impl IncidentStore for SqliteStore {
    fn record_respond<'a>(
        &'a self,
        incidents: &'a [Incident],
        notifications: &'a [Notification],
        audit: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // Multi-row statements: each statement is a round trip to SQLite's thread.
            let mut tx = self.pool.begin().await?;
            for chunk in incidents.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO incidents (id, stage, status, opened_at, data) ");
                q.push_values(chunk, |mut b, i| {
                    b.push_bind(&i.id)
                        .push_bind(&i.stage)
                        .push_bind(&i.status)
                        .push_bind(i.opened_at)
                        .push_bind(serde_json::to_string(i).unwrap_or_default());
                });
                q.push(" ON CONFLICT(id) DO UPDATE SET status = excluded.status, data = excluded.data");
                q.build().execute(&mut *tx).await?;
            }
            let now = crate::time::now_ms();
            for chunk in notifications.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT OR IGNORE INTO outbox (dedupe, incident_id, stage, data, status, next_attempt_at, created_at) ",
                );
                q.push_values(chunk, |mut b, n| {
                    b.push_bind(&n.dedupe)
                        .push_bind(&n.incident_id)
                        .push_bind(&n.stage)
                        .push_bind(serde_json::to_string(n).unwrap_or_default())
                        .push_bind("pending")
                        .push_bind(now)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in audit.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO audit (ts, incident_id, stage, event, detail) ");
                q.push_values(chunk, |mut b, a| {
                    b.push_bind(a.ts).push_bind(&a.incident_id).push_bind(&a.stage).push_bind(&a.event).push_bind(&a.detail);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn incidents<'a>(&'a self, status: Option<&'a str>, limit: i64) -> BoxFuture<'a, Result<Vec<Incident>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT data FROM incidents WHERE ? IS NULL OR status = ? ORDER BY opened_at DESC LIMIT ?")
                .bind(status)
                .bind(status)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().filter_map(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()).collect())
        })
    }

    fn incidents_since(&self, since: i64) -> BoxFuture<'_, Result<Vec<Incident>, StoreError>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT data FROM incidents WHERE opened_at >= ? ORDER BY opened_at").bind(since).fetch_all(&self.pool).await?;
            Ok(rows.into_iter().filter_map(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()).collect())
        })
    }

    fn audit<'a>(&'a self, record: &'a AuditRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            insert_audit(&mut tx, record).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn audit_of<'a>(&'a self, incident: &'a str) -> BoxFuture<'a, Result<Vec<AuditRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT ts, incident_id, stage, event, detail FROM audit WHERE incident_id = ? ORDER BY id")
                .bind(incident)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| AuditRecord { ts: r.get(0), incident_id: r.get(1), stage: r.get(2), event: r.get(3), detail: r.get(4) })
                .collect())
        })
    }

    fn audit_since<'a>(&'a self, since: i64, events: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<AuditRecord>, StoreError>> {
        Box::pin(async move {
            // The events are filtered by SQLite, not here: a week of audit holds every
            // `queued`, `opened` and `resolved` record too.
            let filter = if events.is_empty() { String::new() } else { format!(" AND event IN ({})", vec!["?"; events.len()].join(", ")) };
            let sql = format!("SELECT ts, incident_id, stage, event, detail FROM audit WHERE ts >= ?{filter} ORDER BY id");
            let mut q = sqlx::query(&sql).bind(since);
            for e in events {
                q = q.bind(*e);
            }
            let rows = q.fetch_all(&self.pool).await?;
            Ok(rows
                .into_iter()
                .map(|r| AuditRecord { ts: r.get(0), incident_id: r.get(1), stage: r.get(2), event: r.get(3), detail: r.get(4) })
                .collect())
        })
    }
}

impl OutboxStore for SqliteStore {
    fn due_notifications<'a>(&'a self, now: i64, limit: i64) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? \
                 AND NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.status = 'pending' \
                 AND earlier.incident_id = outbox.incident_id AND earlier.stage = outbox.stage AND earlier.id < outbox.id) \
                 ORDER BY id LIMIT ?"
            ))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().filter_map(outbox_row).collect())
        })
    }

    fn outbox<'a>(&'a self, limit: i64) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?"))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().filter_map(outbox_row).collect())
        })
    }

    fn outbox_of<'a>(&'a self, incident: &'a str) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE incident_id = ? ORDER BY id DESC"))
                .bind(incident)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().filter_map(outbox_row).collect())
        })
    }

    fn outbox_depth(&self) -> BoxFuture<'_, Result<(i64, Option<i64>), StoreError>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'").fetch_one(&self.pool).await?;
            Ok((row.get(0), row.get(1)))
        })
    }

    fn mark_started(&self, id: i64, now: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("UPDATE outbox SET started_at = ? WHERE id = ?").bind(now).bind(id).execute(&self.pool).await?;
            Ok(())
        })
    }

    fn interrupted_notifications<'a>(&'a self, _now: i64, _stages: &'a [String]) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND started_at IS NOT NULL ORDER BY id"
            ))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().filter_map(outbox_row).collect())
        })
    }

    fn reschedule_notification<'a>(&'a self, id: i64, attempts: u32, next: i64, why: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, started_at = NULL WHERE id = ?")
                .bind(i64::from(attempts))
                .bind(next)
                .bind(why)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn finish_notification<'a>(
        &'a self,
        id: i64,
        status: &'a str,
        error: Option<&'a str>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = COALESCE(?, last_error), sent_at = ? WHERE id = ?",
            )
            .bind(status)
            .bind(error)
            .bind(crate::time::now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            insert_audit(&mut tx, audit).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

impl SilenceStore for SqliteStore {
    fn silences(&self) -> BoxFuture<'_, Result<Vec<Silence>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT id, data FROM silences ORDER BY id").fetch_all(&self.pool).await?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let mut s: Silence = serde_json::from_str(&r.get::<String, _>(1)).ok()?;
                    s.id = r.get(0);
                    Some(s)
                })
                .collect())
        })
    }

    fn insert_silence<'a>(&'a self, s: &'a Silence) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            let data = serde_json::to_string(s).unwrap_or_default();
            if s.id > 0 {
                sqlx::query("INSERT INTO silences (id, data) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data")
                    .bind(s.id)
                    .bind(data)
                    .execute(&self.pool)
                    .await?;
                return Ok(s.id);
            }
            let id =
                sqlx::query("INSERT INTO silences (data) VALUES (?) RETURNING id").bind(data).fetch_one(&self.pool).await?.get::<i64, _>(0);
            Ok(id)
        })
    }
}

impl FeedbackStore for SqliteStore {
    fn record_feedback<'a>(
        &'a self,
        record: &'a FeedbackRecord,
        incident: Option<&'a Incident>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let id = sqlx::query("INSERT INTO feedback (incident_id, pipeline, verdict, at, data) VALUES (?, ?, ?, ?, ?) RETURNING id")
                .bind(&record.incident)
                .bind(&record.pipeline)
                .bind(record.verdict.as_str())
                .bind(record.at)
                .bind(serde_json::to_string(record).unwrap_or_default())
                .fetch_one(&mut *tx)
                .await?
                .get::<i64, _>(0);
            if let Some(i) = incident {
                sqlx::query("UPDATE incidents SET data = ? WHERE id = ?")
                    .bind(serde_json::to_string(i).unwrap_or_default())
                    .bind(&i.id)
                    .execute(&mut *tx)
                    .await?;
            }
            insert_audit(&mut tx, audit).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn feedback(&self) -> BoxFuture<'_, Result<Vec<FeedbackRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT id, data FROM feedback ORDER BY id").fetch_all(&self.pool).await?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let mut f: FeedbackRecord = serde_json::from_str(&r.get::<String, _>(1)).ok()?;
                    f.id = r.get(0);
                    Some(f)
                })
                .collect())
        })
    }
}

const OUTBOX_COLUMNS: &str = "id, data, status, attempts, next_attempt_at, last_error, created_at, sent_at";

fn outbox_row(r: &sqlx::sqlite::SqliteRow) -> Option<OutboxRow> {
    Some(OutboxRow {
        id: r.get(0),
        notification: serde_json::from_str(&r.get::<String, _>(1)).ok()?,
        status: r.get(2),
        attempts: u32::try_from(r.get::<i64, _>(3)).unwrap_or(0),
        next_attempt_at: r.get(4),
        last_error: r.get(5),
        created_at: r.get(6),
        sent_at: r.get(7),
    })
}

async fn insert_audit(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, a: &AuditRecord) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit (ts, incident_id, stage, event, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(a.ts)
        .bind(&a.incident_id)
        .bind(&a.stage)
        .bind(&a.event)
        .bind(&a.detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
