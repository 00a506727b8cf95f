//! What the domains' store seams share: the boxed future their methods return (so that a
//! store can be a trait object) and the error. Each domain declares the narrow trait it
//! needs beside its own types — [`crate::runtime::state`] (cursors, runs),
//! [`crate::learn::registry`] (models), [`crate::respond::store`] (incidents, outbox,
//! silences, verdicts) — and [`crate::store`] implements them all.

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
    #[error("state database query failed: {0}")]
    Query(#[from] sqlx::Error),
}
