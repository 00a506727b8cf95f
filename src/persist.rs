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
    #[error("state database query failed: {0}")]
    Query(#[from] sqlx::Error),
}
