//! The PostgreSQL store: [`PostgresStore`] keeps the state in a PostgreSQL database
//! (`vigil run --store postgres://USER@HOST:PORT/DB`), with the tables and the behaviour of
//! the SQLite store ([`super::sqlite`]; `tests/store.rs` runs one suite against both).
//!
//! The schema is the migrations of `migrations/postgres/`, embedded in the binary
//! (`include_str!`) and applied at start by sqlx's [`Migrator`] under its advisory lock, so
//! that nodes starting together migrate once; they are recorded in `_sqlx_migrations`, as
//! `sqlx migrate run --source migrations/postgres` records them. A database holding a
//! migration this binary does not know was written by a newer vigil: it is refused
//! ([`StoreError::NewerSchema`]) before anything is changed.
//!
//! Opening makes one connection first, without the pool's retries, so that a wrong URL,
//! an unreachable server, wrong credentials or a missing database are one clear error at
//! start (the URL's password hidden), never a half-started node.
//!
//! One node ([`PostgresStore::lock_engine`]) keeps a second engine off the database, as the
//! state directory's lock does for SQLite, and behaves as SQLite. Several nodes (`vigil run
//! --cluster`, docs/cluster.md) share it: each holds the same lock shared
//! ([`PostgresStore::lock_cluster`]); [`PostgresStore::clustered`] makes the dispatcher
//! claim outbox rows (`claimed_by`/`claimed_until`, `FOR UPDATE SKIP LOCKED`) and start a
//! send only under its own unexpired claim; [`PostgresStore::take_lease`] bumps a
//! pipeline's fencing revision (`pipeline_leases`) for a node that took its lease, and
//! every write of a tick (incidents with their outbox rows, cursors, runs) is refused
//! unless it carries the newest revision ([`crate::persist::Fence`], checked `FOR SHARE`
//! in the write's transaction).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};

use crate::feedback::FeedbackRecord;
use crate::learn::registry::{ModelEvent, ModelStore};
use crate::respond::store::{FeedbackStore, IncidentStore, OutboxStore, SilenceStore};
use crate::respond::{AuditRecord, Incident, Notification, OutboxRow, Silence};
use crate::runtime::state::{CursorStore, RunStore};

use super::{BoxFuture, ModelRow, RunRecord, StoreError};

/// The migrations, oldest first: (version, description, SQL), as the files
/// `migrations/postgres/VERSION_DESCRIPTION.sql` (sqlx's naming).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, "leases", include_str!("../../migrations/postgres/0002_leases.sql")),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// How long the first connection may take (a server that does not answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows per multi-row INSERT (7 parameters each at most, far below PostgreSQL's 65 535).
const ROWS_PER_INSERT: usize = 200;

/// The advisory lock (two int4 keys: "VIGL", 1) an engine holds on its database.
const ENGINE_LOCK: (i32, i32) = (0x5649_474C, 1);

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The URL with its password hidden, for errors.
    url: String,
    /// In a cluster: this node's name and how long its claim on an outbox row lasts.
    claims: Option<(String, i64)>,
}

/// Most outbox rows one node claims at once in a cluster: rows claimed and not sent yet
/// are delayed for everyone until the claim expires, if the node dies.
const CLAIM_BATCH: i64 = 32;

/// The embedded migrations, as sqlx's [`MigrationSource`].
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
                })
                .collect())
        })
    }
}

/// Held while an engine runs on a database ([`PostgresStore::lock_engine`]): a session
/// advisory lock, released when this is dropped or the process ends.
#[derive(Debug)]
///
/// The lock lives as long as its session: when the connection is lost (PostgreSQL
/// restarted, a network cut), a keeper takes it again on a new connection, retrying with
/// backoff, and cancels [`EngineLock::lost`] when another engine took it meanwhile (the
/// holder must stop then).
pub struct EngineLock {
    keeper: tokio::task::JoinHandle<()>,
    lost: tokio_util::sync::CancellationToken,
}

impl EngineLock {
    /// Cancelled when the lock was lost for good: another engine holds it now.
    pub fn lost(&self) -> tokio_util::sync::CancellationToken {
        self.lost.clone()
    }
}

impl Drop for EngineLock {
    /// Releases the lock (its session's connection closes with the keeper).
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// How long a query waits for a connection: while the server is down, a tick fails after
/// this (and runs again) rather than hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the session holding a lock is checked.
const LOCK_CHECK: Duration = Duration::from_secs(2);

/// Keeps the lock that `sql` took on `conn`: checks the session every [`LOCK_CHECK`]; when
/// it is gone, takes the lock again on a new connection (backoff from 250 ms to 5 s) —
/// or, when another engine took it meanwhile, cancels `lost` and stops.
async fn keep_lock(mut conn: PgConnection, pool: PgPool, sql: &'static str, url: String, lost: tokio_util::sync::CancellationToken) {
    loop {
        tokio::time::sleep(LOCK_CHECK).await;
        let alive = tokio::time::timeout(LOCK_CHECK, sqlx::query("SELECT 1").execute(&mut conn)).await;
        if matches!(alive, Ok(Ok(_))) {
            continue;
        }
        tracing::warn!(store = %url, "the session holding the store's engine lock is gone (PostgreSQL restarted or the connection was cut); taking the lock again");
        let mut delay = Duration::from_millis(250);
        conn = loop {
            let attempt = async {
                let mut c = pool.acquire().await?.detach();
                let got: bool = sqlx::query_scalar(sql).bind(ENGINE_LOCK.0).bind(ENGINE_LOCK.1).fetch_one(&mut c).await?;
                Ok::<_, sqlx::Error>((c, got))
            };
            match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok((c, true))) => break c,
                Ok(Ok((_, false))) => {
                    tracing::error!(store = %url, "another vigil took the store's engine lock while this one's session was gone: stopping (two engines on one database would send everything twice)");
                    lost.cancel();
                    return;
                }
                Ok(Err(e)) => tracing::debug!(store = %url, error = %e, "cannot take the store's engine lock yet"),
                Err(_) => tracing::debug!(store = %url, "cannot take the store's engine lock yet: no answer within 10 s"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        };
        tracing::info!(store = %url, "the store's engine lock is held again");
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS]`),
    /// creating or migrating the schema.
    ///
    /// # Errors
    /// A malformed URL, an unreachable server, wrong credentials, a missing database
    /// ([`StoreError::Open`], naming the URL without its password); a schema newer than
    /// this binary's ([`StoreError::NewerSchema`]); a failed migration.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let shown = super::redact(url);
        let open_err = |source| StoreError::Open { path: shown.clone(), source };
        let opts = PgConnectOptions::from_str(url).map_err(open_err)?.application_name(&format!("vigil (pid {})", std::process::id()));
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
            Ok(conn) => conn.map_err(open_err)?,
            Err(_) => {
                let why = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
                return Err(open_err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, why))));
            }
        };
        let migrated = migrate(&mut conn, &shown).await;
        let _ = conn.close().await;
        migrated?;
        let pool = PgPoolOptions::new().max_connections(8).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(opts).await.map_err(open_err)?;
        Ok(PostgresStore { pool, url: shown, claims: None })
    }

    /// Takes the database for this engine: a second engine on the same database (without
    /// the cluster, which is to come) would send every notification twice. Held until
    /// the returned lock is dropped.
    ///
    /// # Errors
    /// Another engine holds it (the error names its PostgreSQL session), or the server
    /// cannot be reached.
    pub async fn lock_engine(&self) -> Result<EngineLock, StoreError> {
        let mut conn = match self.try_lock("SELECT pg_try_advisory_lock($1, $2)").await? {
            Ok(lock) => return Ok(lock),
            Err(conn) => conn,
        };
        let holder: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT a.application_name, a.client_addr::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = $1 AND l.objid::int8 = $2 AND l.database = \
             (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
        )
        .bind(i64::from(ENGINE_LOCK.0))
        .bind(i64::from(ENGINE_LOCK.1))
        .fetch_optional(&mut conn)
        .await
        .unwrap_or(None);
        let who = match holder {
            Some((app, addr)) => {
                format!("{} from {}", app.unwrap_or_else(|| "a session".into()), addr.unwrap_or_else(|| "a local socket".into()))
            }
            None => "another session".into(),
        };
        let _ = conn.close().await;
        Err(StoreError::Locked { store: self.url.clone(), holder: who })
    }

    /// The same store for one node of a cluster called `node`: its dispatcher claims the
    /// outbox rows it sends (`FOR UPDATE SKIP LOCKED`) for `claim`; a row whose claim
    /// expired (its node died mid-send) is claimed again by any node.
    pub fn clustered(mut self, node: &str, claim: Duration) -> PostgresStore {
        self.claims = Some((node.to_owned(), i64::try_from(claim.as_millis()).unwrap_or(i64::MAX)));
        self
    }

    /// Takes pipeline `pipeline`'s fencing revision for `node`, which has just acquired its
    /// lease: the revision one more than the last owner's, which every write of the new
    /// owner carries ([`crate::persist::Fence`]); writes of older revisions are refused
    /// from now on.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn take_lease(&self, pipeline: &str, node: &str) -> Result<i64, StoreError> {
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO pipeline_leases (pipeline, revision, node, acquired_at) VALUES ($1, 1, $2, $3) \
             ON CONFLICT (pipeline) DO UPDATE SET revision = pipeline_leases.revision + 1, node = excluded.node, \
             acquired_at = excluded.acquired_at RETURNING revision",
        )
        .bind(pipeline)
        .bind(node)
        .bind(crate::time::now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(revision)
    }

    /// Takes the database for one node of a cluster: a *shared* hold of the lock that
    /// [`lock_engine`](Self::lock_engine) takes exclusively. Every node of the cluster
    /// holds it; an engine without `--cluster` (which would run every pipeline beside
    /// them) is refused while any does, and a node is refused while such an engine runs.
    ///
    /// # Errors
    /// An engine without the cluster holds the database, or the server cannot be reached.
    pub async fn lock_cluster(&self) -> Result<EngineLock, StoreError> {
        match self.try_lock("SELECT pg_try_advisory_lock_shared($1, $2)").await? {
            Ok(lock) => Ok(lock),
            Err(conn) => {
                let _ = conn.close().await;
                Err(StoreError::Locked { store: self.url.clone(), holder: "an engine without --cluster".into() })
            }
        }
    }

    /// Tries `sql` (`pg_try_advisory_lock…` of [`ENGINE_LOCK`]) on a connection of its own
    /// for 3 s: an engine that just died (a restart) holds the lock until the server
    /// notices its socket closed. The lock, or the connection it was refused on.
    async fn try_lock(&self, sql: &'static str) -> Result<Result<EngineLock, sqlx::PgConnection>, StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        for attempt in 0..12 {
            let got: bool = sqlx::query_scalar(sql).bind(ENGINE_LOCK.0).bind(ENGINE_LOCK.1).fetch_one(&mut conn).await?;
            if got {
                let lost = tokio_util::sync::CancellationToken::new();
                let keeper = tokio::spawn(keep_lock(conn, self.pool.clone(), sql, self.url.clone(), lost.clone()));
                return Ok(Ok(EngineLock { keeper, lost }));
            }
            if attempt < 11 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(Err(conn))
    }

    /// Closes the pool, waiting for queries in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool, for tests and tools that look at the tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl crate::cluster::LeaseStore for PostgresStore {
    fn fence<'a>(&'a self, pipeline: &'a str, node: &'a str) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(self.take_lease(pipeline, node))
    }
}

/// Refuses a schema newer than [`SCHEMA_VERSION`], then applies the missing migrations.
async fn migrate(conn: &mut PgConnection, shown: &str) -> Result<(), StoreError> {
    let migrate_err = |reason: String| StoreError::Migrate { store: shown.to_owned(), reason };
    let known: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&mut *conn).await?;
    if known {
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&mut *conn).await?;
        if let Some(found) = found.filter(|&v| v > SCHEMA_VERSION) {
            return Err(StoreError::NewerSchema { store: shown.to_owned(), found, known: SCHEMA_VERSION });
        }
    }
    let migrator = Migrator::new(Embedded).await.map_err(|e| migrate_err(e.to_string()))?;
    migrator.run(&mut *conn).await.map_err(|e| migrate_err(e.to_string()))
}

impl CursorStore for PostgresStore {
    fn load_cursor<'a>(&'a self, stage: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let cursor =
                sqlx::query_scalar("SELECT cursor FROM cursors WHERE stage_key = $1").bind(stage).fetch_optional(&self.pool).await?;
            Ok(cursor)
        })
    }

    fn save_cursors<'a>(&'a self, cursors: &'a [(String, String)]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if cursors.is_empty() {
                return Ok(());
            }
            // One statement (one round trip), in one transaction as on SQLite; a key given
            // twice keeps its last cursor (ON CONFLICT cannot update a row twice).
            let mut last: Vec<&(String, String)> = Vec::with_capacity(cursors.len());
            for c in cursors {
                match last.iter_mut().find(|l| l.0 == c.0) {
                    Some(l) => *l = c,
                    None => last.push(c),
                }
            }
            let now = crate::time::now_ms();
            let mut tx = self.pool.begin().await?;
            check_fence(&mut tx).await?;
            for chunk in last.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO cursors (stage_key, cursor, updated_at) ");
                q.push_values(chunk, |mut b, (k, c)| {
                    b.push_bind(k).push_bind(c).push_bind(now);
                });
                q.push(" ON CONFLICT (stage_key) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

impl RunStore for PostgresStore {
    fn record_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            check_fence(&mut tx).await?;
            sqlx::query(
                "INSERT INTO runs (pipeline, version, started_at, finished_at, status, items, error, failed_stage) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&run.pipeline)
            .bind(&run.version)
            .bind(run.started_at)
            .bind(run.finished_at)
            .bind(&run.status)
            .bind(run.items)
            .bind(&run.error)
            .bind(&run.failed_stage)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn recent_runs<'a>(&'a self, pipeline: &'a str, limit: i64) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT pipeline, version, started_at, finished_at, status, items, error, failed_stage FROM runs \
                 WHERE pipeline = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(pipeline)
            .bind(no_limit_below_zero(limit))
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

impl ModelStore for PostgresStore {
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
                sqlx::query("UPDATE models SET active = FALSE WHERE stage_key = $1 AND series = $2")
                    .bind(&meta.key)
                    .bind(&meta.series)
                    .execute(&mut *tx)
                    .await?;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO models (stage_key, series, version, kind, path, meta, created_at, active) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (stage_key, series, version) DO UPDATE SET kind = excluded.kind, path = excluded.path, \
                 meta = excluded.meta, created_at = excluded.created_at, active = excluded.active RETURNING id",
            )
            .bind(&meta.key)
            .bind(&meta.series)
            .bind(i64::from(meta.version))
            .bind(&meta.kind)
            .bind(path)
            .bind(json)
            .bind(meta.created_at)
            .bind(activate)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn models<'a>(&'a self, key: Option<&'a str>) -> BoxFuture<'a, Result<Vec<ModelRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, meta, path, active FROM models WHERE $1::text IS NULL OR stage_key = $1 \
                 ORDER BY stage_key, series, version",
            )
            .bind(key)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let meta: crate::learn::ModelMeta = serde_json::from_str(&r.get::<String, _>(1)).ok()?;
                    Some(ModelRow { id: r.get(0), meta, path: r.get(2), active: r.get(3) })
                })
                .collect())
        })
    }

    fn activate_model<'a>(&'a self, id: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // One statement, as on SQLite: the versions of the series change together.
            let done = sqlx::query(
                "UPDATE models SET active = (id = $1) WHERE (stage_key, series) = (SELECT stage_key, series FROM models WHERE id = $1)",
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

impl IncidentStore for PostgresStore {
    fn record_respond<'a>(
        &'a self,
        incidents: &'a [Incident],
        notifications: &'a [Notification],
        audit: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // An incident given twice: its last state wins, as SQLite's row-by-row upsert
            // leaves it (one PostgreSQL statement cannot update a row twice).
            let mut last: Vec<&Incident> = Vec::with_capacity(incidents.len());
            let mut at = std::collections::HashMap::with_capacity(incidents.len());
            for i in incidents {
                match at.get(i.id.as_str()) {
                    Some(&n) => last[n] = i,
                    None => {
                        at.insert(i.id.as_str(), last.len());
                        last.push(i);
                    }
                }
            }
            let mut tx = self.pool.begin().await?;
            check_fence(&mut tx).await?;
            for chunk in last.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO incidents (id, stage, status, opened_at, data) ");
                q.push_values(chunk, |mut b, i| {
                    b.push_bind(&i.id)
                        .push_bind(&i.stage)
                        .push_bind(&i.status)
                        .push_bind(i.opened_at)
                        .push_bind(serde_json::to_string(i).unwrap_or_default());
                });
                q.push(" ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data");
                q.build().execute(&mut *tx).await?;
            }
            let now = crate::time::now_ms();
            for chunk in notifications.chunks(ROWS_PER_INSERT) {
                // Rows take their ids in the order given (the outbox sends in id order).
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                    "INSERT INTO outbox (dedupe, incident_id, stage, data, status, next_attempt_at, created_at) ",
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
                q.push(" ON CONFLICT (dedupe) DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            for chunk in audit.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO audit (ts, incident_id, stage, event, detail) ");
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
            let rows: Vec<String> =
                sqlx::query_scalar("SELECT data FROM incidents WHERE $1::text IS NULL OR status = $1 ORDER BY opened_at DESC LIMIT $2")
                    .bind(status)
                    .bind(no_limit_below_zero(limit))
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows.iter().filter_map(|d| serde_json::from_str(d).ok()).collect())
        })
    }

    fn incidents_since(&self, since: i64) -> BoxFuture<'_, Result<Vec<Incident>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<String> = sqlx::query_scalar("SELECT data FROM incidents WHERE opened_at >= $1 ORDER BY opened_at")
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().filter_map(|d| serde_json::from_str(d).ok()).collect())
        })
    }

    fn audit<'a>(&'a self, record: &'a AuditRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            insert_audit(&mut *self.pool.acquire().await?, record).await?;
            Ok(())
        })
    }

    fn audit_of<'a>(&'a self, incident: &'a str) -> BoxFuture<'a, Result<Vec<AuditRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT ts, incident_id, stage, event, detail FROM audit WHERE incident_id = $1 ORDER BY id")
                .bind(incident)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(audit_record).collect())
        })
    }

    fn audit_since<'a>(&'a self, since: i64, events: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<AuditRecord>, StoreError>> {
        Box::pin(async move {
            let events: Vec<String> = events.iter().map(|e| (*e).to_owned()).collect();
            let rows = sqlx::query(
                "SELECT ts, incident_id, stage, event, detail FROM audit \
                 WHERE ts >= $1 AND (cardinality($2::text[]) = 0 OR event = ANY($2)) ORDER BY id",
            )
            .bind(since)
            .bind(events)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(audit_record).collect())
        })
    }
}

impl OutboxStore for PostgresStore {
    fn due_notifications<'a>(&'a self, now: i64, limit: i64) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.status = 'pending' \
                 AND earlier.incident_id = outbox.incident_id AND earlier.stage = outbox.stage AND earlier.id < outbox.id) \
                 ORDER BY id LIMIT $2"
            ))
            .bind(now)
            .bind(no_limit_below_zero(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().filter_map(outbox_row).collect())
        })
    }

    fn claim_due<'a>(&'a self, now: i64, limit: i64, stages: &'a [String]) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        let Some((node, claim)) = &self.claims else { return self.due_notifications(now, limit) };
        Box::pin(async move {
            if stages.is_empty() {
                return Ok(Vec::new());
            }
            // The rows are locked while claimed (SKIP LOCKED: two dispatchers claiming at
            // once take different rows); a row claimed by a live node is skipped until its
            // claim expires.
            let rows = sqlx::query(&format!(
                "UPDATE outbox SET claimed_by = $3, claimed_until = $1 + $4 WHERE id IN ( \
                 SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 AND started_at IS NULL \
                 AND (claimed_until IS NULL OR claimed_until < $1) AND stage = ANY($5) \
                 AND NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.status = 'pending' \
                 AND earlier.incident_id = outbox.incident_id AND earlier.stage = outbox.stage AND earlier.id < outbox.id) \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING {OUTBOX_COLUMNS}"
            ))
            .bind(now)
            .bind(limit.clamp(0, CLAIM_BATCH))
            .bind(node)
            .bind(*claim)
            .bind(stages)
            .fetch_all(&self.pool)
            .await?;
            let mut rows: Vec<OutboxRow> = rows.iter().filter_map(outbox_row).collect();
            rows.sort_by_key(|r| r.id);
            Ok(rows)
        })
    }

    fn release_claims(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let Some((node, _)) = &self.claims else { return Ok(0) };
            let done = sqlx::query(
                "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1 AND status = 'pending' \
                 AND started_at IS NULL",
            )
            .bind(node)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn outbox<'a>(&'a self, limit: i64) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT $1"))
                .bind(no_limit_below_zero(limit))
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().filter_map(outbox_row).collect())
        })
    }

    fn outbox_of<'a>(&'a self, incident: &'a str) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE incident_id = $1 ORDER BY id DESC"))
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
            let Some((node, claim)) = &self.claims else {
                sqlx::query("UPDATE outbox SET started_at = $1 WHERE id = $2").bind(now).bind(id).execute(&self.pool).await?;
                return Ok(());
            };
            // Only under this node's unexpired claim, which the send then extends.
            let done = sqlx::query(
                "UPDATE outbox SET started_at = $1, claimed_until = $1 + $4 WHERE id = $2 AND claimed_by = $3 \
                 AND claimed_until >= $1 AND status = 'pending'",
            )
            .bind(now)
            .bind(id)
            .bind(node)
            .bind(*claim)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::ClaimLost { id });
            }
            Ok(())
        })
    }

    fn interrupted_notifications<'a>(&'a self, now: i64, stages: &'a [String]) -> BoxFuture<'a, Result<Vec<OutboxRow>, StoreError>> {
        Box::pin(async move {
            if let Some((node, claim)) = &self.claims {
                // A row whose send started is in flight while its node's claim lasts (the
                // send extends it); once expired, its node is gone: claimed here, so that
                // one node decides (a remediation is not run again; `claim_due` leaves
                // such rows alone).
                let rows = sqlx::query(&format!(
                    "UPDATE outbox SET claimed_by = $2, claimed_until = $1 + $3 WHERE id IN ( \
                     SELECT id FROM outbox WHERE status = 'pending' AND started_at IS NOT NULL \
                     AND claimed_until < $1 AND stage = ANY($4) ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED) \
                     RETURNING {OUTBOX_COLUMNS}"
                ))
                .bind(now)
                .bind(node)
                .bind(*claim)
                .bind(stages)
                .bind(CLAIM_BATCH)
                .fetch_all(&self.pool)
                .await?;
                let mut rows: Vec<OutboxRow> = rows.iter().filter_map(outbox_row).collect();
                rows.sort_by_key(|r| r.id);
                return Ok(rows);
            }
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
            sqlx::query(
                "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, started_at = NULL, claimed_by = NULL, \
                 claimed_until = NULL WHERE id = $4",
            )
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
                "UPDATE outbox SET status = $1, attempts = attempts + 1, last_error = COALESCE($2, last_error), sent_at = $3 WHERE id = $4",
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

impl SilenceStore for PostgresStore {
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
                let mut tx = self.pool.begin().await?;
                sqlx::query("INSERT INTO silences (id, data) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET data = excluded.data")
                    .bind(s.id)
                    .bind(data)
                    .execute(&mut *tx)
                    .await?;
                // An id given by hand does not move the sequence: move it past, so that the
                // next new silence does not collide (SQLite's AUTOINCREMENT does this itself).
                sqlx::query(
                    "SELECT setval(pg_get_serial_sequence('silences', 'id'), $1) \
                     WHERE $1 > (SELECT last_value FROM silences_id_seq)",
                )
                .bind(s.id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(s.id);
            }
            let id: i64 =
                sqlx::query_scalar("INSERT INTO silences (data) VALUES ($1) RETURNING id").bind(data).fetch_one(&self.pool).await?;
            Ok(id)
        })
    }
}

impl FeedbackStore for PostgresStore {
    fn record_feedback<'a>(
        &'a self,
        record: &'a FeedbackRecord,
        incident: Option<&'a Incident>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO feedback (incident_id, pipeline, verdict, at, data) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(&record.incident)
            .bind(&record.pipeline)
            .bind(record.verdict.as_str())
            .bind(record.at)
            .bind(serde_json::to_string(record).unwrap_or_default())
            .fetch_one(&mut *tx)
            .await?;
            if let Some(i) = incident {
                sqlx::query("UPDATE incidents SET data = $1 WHERE id = $2")
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

/// A limit as SQLite reads it: a negative one is no limit (`LIMIT NULL` on PostgreSQL).
fn no_limit_below_zero(limit: i64) -> Option<i64> {
    (limit >= 0).then_some(limit)
}

const OUTBOX_COLUMNS: &str = "id, data, status, attempts, next_attempt_at, last_error, created_at, sent_at";

fn outbox_row(r: &PgRow) -> Option<OutboxRow> {
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

fn audit_record(r: &PgRow) -> AuditRecord {
    AuditRecord { ts: r.get(0), incident_id: r.get(1), stage: r.get(2), event: r.get(3), detail: r.get(4) }
}

async fn insert_audit(conn: &mut PgConnection, a: &AuditRecord) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit (ts, incident_id, stage, event, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(a.ts)
        .bind(&a.incident_id)
        .bind(&a.stage)
        .bind(&a.event)
        .bind(&a.detail)
        .execute(conn)
        .await?;
    Ok(())
}

/// Refuses the write under way unless the task's fence (if any: one node has none) is
/// still the newest revision of its pipeline's lease. Reads the lease row `FOR SHARE` in
/// the write's own transaction, so that a takeover (which updates the row) waits for
/// this write to commit, and every write after the takeover sees the new revision.
async fn check_fence(conn: &mut PgConnection) -> Result<(), StoreError> {
    let Some(fence) = crate::persist::current_fence() else { return Ok(()) };
    let current: Option<i64> = sqlx::query_scalar("SELECT revision FROM pipeline_leases WHERE pipeline = $1 FOR SHARE")
        .bind(&fence.pipeline)
        .fetch_optional(conn)
        .await?;
    if current == Some(fence.revision) {
        return Ok(());
    }
    fence.refuse();
    Err(StoreError::Fenced { pipeline: fence.pipeline.clone(), held: fence.revision, current: current.unwrap_or(0) })
}
