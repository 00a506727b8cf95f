//! Where model artifacts are kept: the seam between the registry and its storage.
//!
//! - **Input**: an artifact's name relative to the registry's root
//!   (`<stage key>/<series digest>/vN.bpk`, see [`super::registry`]) and its bytes.
//! - **Output**: a location, recorded in the `models` table's `path` column, from which
//!   any node that can reach the store reads the bytes back.
//! - **Implementations**: [`LocalDir`] (one node: files under `STATE/models/`, the
//!   location is the file's path, written to a temporary name and renamed) and, under
//!   `vigil run --cluster`, the JetStream object store `PREFIX-models`
//!   (`src/cluster/train.rs`, locations `nats-object://PREFIX-models/<name>`).

use std::path::PathBuf;

use crate::persist::BoxFuture;

/// Stores and reads artifacts by name.
pub trait ArtifactStore: Send + Sync {
    /// Stores `bytes` under `name` (replacing what was there); returns the location to
    /// record.
    fn put<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<String, ArtifactError>>;
    /// The bytes at `location`, as [`put`](Self::put) returned it.
    fn get<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ArtifactError>>;
    /// Removes what is at `location` (nothing when there is nothing).
    fn delete<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<(), ArtifactError>>;
}

/// Why an artifact could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Nothing at the location.
    #[error("{0} is missing")]
    Missing(String),
    /// The storage failed (a file system, NATS).
    #[error("{0}")]
    Failed(String),
}

/// Artifacts as files under a directory (`STATE/models/`): the location is the file's
/// path.
#[derive(Clone, Debug)]
pub struct LocalDir {
    pub root: PathBuf,
}

impl LocalDir {
    /// The store rooted at `root` (created on the first write).
    pub fn new(root: PathBuf) -> LocalDir {
        LocalDir { root }
    }
}

/// Reads a file written by [`LocalDir`] (also what a store of another kind does with a
/// location that is a plain path: a version registered before the node joined a cluster).
///
/// # Errors
/// A missing or unreadable file.
pub fn read_file(location: &str) -> Result<Vec<u8>, ArtifactError> {
    match std::fs::read(location) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ArtifactError::Missing(location.to_owned())),
        Err(e) => Err(ArtifactError::Failed(format!("cannot read `{location}`: {e}"))),
    }
}

impl ArtifactStore for LocalDir {
    fn put<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<String, ArtifactError>> {
        Box::pin(async move {
            let path = self.root.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| ArtifactError::Failed(format!("cannot create `{}`: {e}", dir.display())))?;
            }
            // Written to a temporary name and renamed: a crash never leaves half an
            // artifact under the final name.
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| ArtifactError::Failed(format!("cannot write `{}`: {e}", path.display())))?;
            Ok(path.display().to_string())
        })
    }

    fn get<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ArtifactError>> {
        Box::pin(async move { read_file(location) })
    }

    fn delete<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<(), ArtifactError>> {
        Box::pin(async move {
            match std::fs::remove_file(location) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(ArtifactError::Failed(format!("cannot remove `{location}`: {e}")))
                }
                _ => Ok(()),
            }
        })
    }
}
