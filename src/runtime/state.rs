//! What the engine keeps in the state store: each stage's cursor (or snapshot) and the
//! run history. The engine holds these seams; [`crate::store`] implements them.

use crate::learn::registry::ModelStore;
use crate::persist::{BoxFuture, StoreError};
use crate::respond::store::RespondStore;

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

/// Cursors and operator snapshots, by stage key.
pub trait CursorStore: Send + Sync {
    /// The cursor saved for a stage.
    fn load_cursor<'a>(&'a self, stage: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Saves cursors (stage key, cursor) in one transaction.
    fn save_cursors<'a>(&'a self, cursors: &'a [(String, String)]) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The run history: one record per tick.
pub trait RunStore: Send + Sync {
    /// Appends a run to the history.
    fn record_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The newest runs of a pipeline, newest first.
    fn recent_runs<'a>(&'a self, pipeline: &'a str, limit: i64) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>>;
    /// Whether the store answers: one cheap read (the engine's health probe).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.recent_runs("", 1).await.map(|_| ()) })
    }
}

/// Everything the engine keeps, the union of every domain's seam: a store implements
/// each domain's trait ([`CursorStore`], [`RunStore`], [`ModelStore`],
/// [`crate::respond::store::IncidentStore`], [`crate::respond::store::OutboxStore`],
/// [`crate::respond::store::SilenceStore`], [`crate::respond::store::FeedbackStore`]) and
/// is then a `Store`. The engine holds one and hands each domain only its narrow trait.
pub trait Store: CursorStore + RunStore + ModelStore + RespondStore {}

impl<T: CursorStore + RunStore + ModelStore + RespondStore> Store for T {}
