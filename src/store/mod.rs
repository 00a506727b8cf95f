//! The state store: cursors, the run history, the model registry, incidents, the
//! notification outbox, silences and verdicts. Two implementations, with sqlx:
//!
//! - [`SqliteStore`] ([`sqlite`]): an embedded SQLite database (`STATE/state.db`), the
//!   default, for one node;
//! - [`PostgresStore`] ([`postgres`]): a PostgreSQL database (`vigil run --store
//!   postgres://…`), which the nodes of a cluster share (`--cluster`, docs/cluster.md), its
//!   schema kept by the migrations in `migrations/postgres/`.
//!
//! Both implement the seam each domain declares beside its own types — cursors and runs
//! ([`crate::runtime::state`]), models ([`crate::learn::registry`]), incidents, outbox,
//! silences and verdicts ([`crate::respond::store`]) — with the same behaviour (one suite,
//! `tests/store.rs`, runs against both), and so are a [`Store`], the union the engine
//! holds. This module imports the domains, never the reverse.
//!
//! [`StoreUrl`] reads `--store`; [`open`] opens the store it names.

pub mod postgres;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::learn::registry::ModelRow;
pub use crate::persist::{BoxFuture, StoreError};
pub use crate::runtime::state::{RunRecord, Store};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The store traits, to call their methods on a `dyn Store`: `use vigil::store::prelude::*`.
pub mod prelude {
    pub use crate::learn::registry::ModelStore;
    pub use crate::respond::store::{FeedbackStore, IncidentStore, OutboxStore, RespondStore, SilenceStore};
    pub use crate::runtime::state::{CursorStore, RunStore, Store};
}

/// Where the state is kept, as `--store` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `STATE/state.db` of the state directory (no `--store`).
    StateDir(PathBuf),
    /// `sqlite://PATH`: this SQLite database file.
    Sqlite(PathBuf),
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS]` (or `postgresql://`).
    Postgres(String),
}

impl StoreUrl {
    /// Reads `--store` (`None`: the state directory's SQLite database).
    ///
    /// # Errors
    /// An unknown scheme, or a URL without a path or database.
    pub fn parse(store: Option<&str>, state: &Path) -> Result<StoreUrl, String> {
        let Some(url) = store else { return Ok(StoreUrl::StateDir(state.to_path_buf())) };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("`sqlite://` needs a database file: `sqlite://PATH` (e.g. `sqlite://.vigil/state.db`)".into());
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        Err(format!(
            "`--store {}`: not a store URL; give `postgres://USER@HOST:PORT/DATABASE` or `sqlite://PATH` \
             (without --store the state directory's SQLite database is used)",
            redact(url)
        ))
    }

    /// How logs and errors name it: a path, or the URL with its password hidden.
    pub fn display(&self) -> String {
        match self {
            StoreUrl::StateDir(dir) => dir.join("state.db").display().to_string(),
            StoreUrl::Sqlite(path) => path.display().to_string(),
            StoreUrl::Postgres(url) => redact(url),
        }
    }
}

/// Opens the store `url` names, creating or migrating its schema.
///
/// # Errors
/// The database cannot be reached, opened or migrated, or its schema is newer than this
/// vigil's: the error names the store (a URL's password hidden), and nothing is started.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::StateDir(dir) => Arc::new(SqliteStore::open(dir).await?),
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open_file(path).await?),
        StoreUrl::Postgres(url) => Arc::new(PostgresStore::connect(url).await?),
    })
}

/// A URL with its password hidden (`postgres://vigil:***@db/vigil`), also a `password=`
/// query parameter: what logs and errors print.
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?', '#']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("postgres://vigil:s3cret@db:5432/vigil"), "postgres://vigil:***@db:5432/vigil");
        assert_eq!(redact("postgres://vigil@db/vigil"), "postgres://vigil@db/vigil");
        assert_eq!(
            redact("postgres://db/vigil?user=v&password=x&sslmode=require"),
            "postgres://db/vigil?user=v&password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://u:p@ss@db/x"), "postgres://u:***@db/x");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn store_urls() {
        let state = Path::new(".vigil");
        assert_eq!(StoreUrl::parse(None, state), Ok(StoreUrl::StateDir(state.into())));
        assert_eq!(StoreUrl::parse(Some("sqlite:///tmp/x.db"), state), Ok(StoreUrl::Sqlite("/tmp/x.db".into())));
        assert_eq!(StoreUrl::parse(Some("sqlite://rel/x.db"), state), Ok(StoreUrl::Sqlite("rel/x.db".into())));
        assert!(matches!(StoreUrl::parse(Some("postgresql://u@h/d"), state), Ok(StoreUrl::Postgres(_))));
        let err = StoreUrl::parse(Some("mysql://u:pw@h/d"), state).unwrap_err();
        assert!(err.contains("mysql://u:***@h/d") && !err.contains("pw"), "{err}");
        assert!(StoreUrl::parse(Some("sqlite://"), state).is_err());
        assert_eq!(StoreUrl::Postgres("postgres://a:b@h/d".into()).display(), "postgres://a:***@h/d");
    }
}
