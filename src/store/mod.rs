//! The state store: cursors and run history (and, with later issues, the model registry,
//! incidents and the notification outbox), behind one interface.
//!
//! [`Store`] is what the engine uses; [`SqliteStore`] implements it over an embedded SQLite
//! database (`STATE/state.db`) with sqlx, whose PostgreSQL driver can implement the same
//! interface when several nodes share a store.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use crate::runtime::BoxFuture;

/// A problem with the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database `{path}`: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// One tick's record.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunRecord {
    pub pipeline: String,
    /// The content hash of the sources the tick ran.
    pub version: String,
    pub started_at: i64,
    pub finished_at: i64,
    /// `ok` or `failed`.
    pub status: String,
    /// Items the pipeline's stages produced.
    pub items: i64,
    pub error: Option<String>,
    pub failed_stage: Option<String>,
}

/// The interface the engine uses. Methods return boxed futures so that the store can be
/// a trait object.
pub trait Store: Send + Sync {
    /// The cursor saved for a stage.
    fn load_cursor<'a>(&'a self, stage: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Saves cursors (stage key, cursor) in one transaction.
    fn save_cursors<'a>(&'a self, cursors: &'a [(String, String)]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Appends a run to the history.
    fn record_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The newest runs of a pipeline, newest first.
    fn recent_runs<'a>(&'a self, pipeline: &'a str, limit: i64) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>>;
    /// Records a new model version and makes it the active one of its (stage, series);
    /// returns its id.
    fn insert_model<'a>(&'a self, meta: &'a crate::learn::ModelMeta, path: &'a str) -> BoxFuture<'a, Result<i64, StoreError>>;
    /// The model versions of a stage (or of all stages), oldest first.
    fn models<'a>(&'a self, key: Option<&'a str>) -> BoxFuture<'a, Result<Vec<ModelRow>, StoreError>>;
    /// Makes version `id` the active one of its (stage, series); false when there is no
    /// such version.
    fn activate_model<'a>(&'a self, id: i64) -> BoxFuture<'a, Result<bool, StoreError>>;
}

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
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1')",
];

/// A model version in the registry.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelRow {
    pub id: i64,
    pub meta: crate::learn::ModelMeta,
    /// The artifact's path.
    pub path: String,
    /// Whether predict uses this version.
    pub active: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/state.db`, creating `dir` too.
    ///
    /// # Errors
    /// When the directory or database cannot be created or opened.
    pub async fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = dir.join("state.db");
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await.map_err(open_err)?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await?;
        }
        Ok(SqliteStore { pool })
    }

    /// Closes the pool, waiting for queries in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Store for SqliteStore {
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

    fn insert_model<'a>(&'a self, meta: &'a crate::learn::ModelMeta, path: &'a str) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            let json = serde_json::to_string(meta).unwrap_or_default();
            let mut tx = self.pool.begin().await?;
            sqlx::query("UPDATE models SET active = 0 WHERE stage_key = ? AND series = ?")
                .bind(&meta.key)
                .bind(&meta.series)
                .execute(&mut *tx)
                .await?;
            let id = sqlx::query(
                "INSERT INTO models (stage_key, series, version, kind, path, meta, created_at, active) VALUES (?, ?, ?, ?, ?, ?, ?, 1) \
                 ON CONFLICT(stage_key, series, version) DO UPDATE SET kind = excluded.kind, path = excluded.path, meta = excluded.meta, \
                 created_at = excluded.created_at, active = 1 RETURNING id",
            )
            .bind(&meta.key)
            .bind(&meta.series)
            .bind(i64::from(meta.version))
            .bind(&meta.kind)
            .bind(path)
            .bind(json)
            .bind(meta.created_at)
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
            let mut tx = self.pool.begin().await?;
            let Some(row) = sqlx::query("SELECT stage_key, series FROM models WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?
            else {
                return Ok(false);
            };
            let (key, series): (String, String) = (row.get(0), row.get(1));
            sqlx::query("UPDATE models SET active = (id = ?) WHERE stage_key = ? AND series = ?")
                .bind(id)
                .bind(&key)
                .bind(&series)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
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
