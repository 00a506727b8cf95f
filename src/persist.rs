//! What the domains' store seams share: the boxed future their methods return (so that a
//! store can be a trait object) and the error. Each domain declares the narrow trait it
//! needs beside its own types — [`crate::runtime::state`] (cursors, runs),
//! [`crate::learn::registry`] (models), [`crate::respond::store`] (incidents, outbox,
//! silences, verdicts) — and [`crate::store`] implements them all. And the [`Fence`] a
//! clustered pipeline's writes carry, which a shared store checks.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for object-safe traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A problem with the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database `{path}`: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database was written by a newer vigil: its schema is refused, never changed.
    #[error(
        "the state database `{store}` has schema version {found}, newer than this vigil's ({known}): \
         it was written by a newer vigil — run that version, or point this one at another store"
    )]
    NewerSchema { store: String, found: i64, known: i64 },
    /// Another engine runs on this database.
    #[error(
        "another vigil is running on the state database `{store}` ({holder}): stop it, or give this one another \
         --store (several nodes share one database only as a cluster)"
    )]
    Locked { store: String, holder: String },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the state database `{store}`: {reason}")]
    Migrate { store: String, reason: String },
    /// A write for a pipeline whose lease another node has taken since (fencing, see
    /// [`Fence`]): refused, nothing written.
    #[error(
        "refused a write for pipeline `{pipeline}`: this node's lease (revision {held}) was taken over by another \
         node (revision {current}); this node stops running it"
    )]
    Fenced { pipeline: String, held: i64, current: i64 },
    /// A notification this node claimed was claimed by another node since (its claim
    /// expired): not sent from here.
    #[error("notification {id} is no longer claimed by this node (its claim expired and another node took it)")]
    ClaimLost { id: i64 },
    #[error("state database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// The lease a pipeline's owner holds in a cluster, as the store sees it: every write made
/// for the pipeline carries `revision`, and a store shared by several nodes refuses it
/// once the pipeline's lease has a newer revision (another node took it over) —
/// [`StoreError::Fenced`], after which [`Fence::refused`] is true.
///
/// The writes of a tick carry it implicitly: the engine runs each tick of a clustered
/// pipeline inside [`fenced`], and the store reads [`current_fence`]. (A parameter on
/// every store method would say the same at every call site of every store; the
/// task-local keeps the domains' seams as they are and cannot be forgotten by a new
/// write in a tick.)
#[derive(Debug)]
pub struct Fence {
    pub pipeline: String,
    pub revision: i64,
    refused: std::sync::atomic::AtomicBool,
}

impl Fence {
    pub fn new(pipeline: &str, revision: i64) -> Fence {
        Fence { pipeline: pipeline.to_owned(), revision, refused: false.into() }
    }

    /// Whether the store refused a write under this fence: the lease is lost.
    pub fn refused(&self) -> bool {
        self.refused.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Notes that the store refused a write under this fence.
    pub fn refuse(&self) {
        self.refused.store(true, std::sync::atomic::Ordering::Release);
    }
}

tokio::task_local! {
    static FENCE: std::sync::Arc<Fence>;
}

/// Runs `f` with `fence` as the [`current_fence`] of its writes (no fence: as it is).
/// Tasks `f` spawns do not inherit it: wrap them too.
pub async fn fenced<F: Future>(fence: Option<std::sync::Arc<Fence>>, f: F) -> F::Output {
    match fence {
        Some(fence) => FENCE.scope(fence, f).await,
        None => f.await,
    }
}

/// The fence of the task running now, if it runs under one.
pub fn current_fence() -> Option<std::sync::Arc<Fence>> {
    FENCE.try_with(std::sync::Arc::clone).ok()
}
