//! The model registry: every trained version is an artifact under `STATE/models/`, with
//! its metadata in the state store (the `models` table) and beside the artifact
//! (`vN.json`), so that a model survives a restart without retraining.
//!
//! Layout: `models/<stage key>/<series digest>/vN.bpk` (burnpack, burn's format, for the
//! neural models) or `vN.profile.json` (the seasonal baseline). Files are written to a
//! temporary name and renamed, so a crash never leaves half an artifact under the final
//! name. Exactly one version per (stage, series) is active: predict uses it; `vigil models
//! promote|rollback` changes which.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Body, Fitted, ModelMeta};
use crate::store::{ModelRow, Store};

/// Where artifacts go, and the store that indexes them.
#[derive(Clone)]
pub struct Registry {
    pub dir: PathBuf,
    pub store: Arc<dyn Store>,
}

/// The folder of one (stage, series): readable stage key, digest of the series identity.
pub fn series_dir(root: &Path, key: &str, series: &str) -> PathBuf {
    let digest = Sha256::digest(series.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let safe_key: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~') { c } else { '_' }).collect();
    root.join(safe_key).join(hex)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes a version's artifact and metadata file; returns the artifact's path.
///
/// # Errors
/// When the files cannot be written.
pub fn save_artifact(root: &Path, f: &Fitted) -> Result<PathBuf, String> {
    let dir = series_dir(root, &f.meta.key, &f.meta.series);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let v = f.meta.version;
    let path = match &f.body {
        Body::Net { record, .. } => {
            let path = dir.join(format!("v{v}.bpk"));
            let tmp = path.with_extension("bpk.tmp");
            record.clone().save(&tmp).map_err(|e| format!("cannot write `{}`: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            path
        }
        Body::Baseline(p) => {
            let path = dir.join(format!("v{v}.profile.json"));
            let bytes = serde_json::to_vec(p).map_err(|e| e.to_string())?;
            write_atomic(&path, &bytes).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            path
        }
    };
    let meta = serde_json::to_vec_pretty(&f.meta).map_err(|e| e.to_string())?;
    let meta_path = dir.join(format!("v{v}.json"));
    write_atomic(&meta_path, &meta).map_err(|e| format!("cannot write `{}`: {e}", meta_path.display()))?;
    Ok(path)
}

/// Loads a version from its artifact.
///
/// # Errors
/// When the file is missing, corrupt, or does not fit the metadata's shape.
pub fn load_artifact(path: &Path, meta: &ModelMeta) -> Result<Fitted, String> {
    let what = || format!("model {} v{} ({})", meta.key, meta.version, path.display());
    let body = if meta.kind == "baseline" {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", what()))?;
        let p: super::Profile = serde_json::from_slice(&bytes).map_err(|e| format!("{} is corrupt: {e}", what()))?;
        if p.season_ms <= 0 || p.bucket_ms <= 0 {
            return Err(format!("{} is corrupt: a season or bucket is not positive", what()));
        }
        Body::Baseline(p)
    } else {
        if !path.exists() {
            return Err(format!("{} is missing", what()));
        }
        if meta.dims.len() < 2 {
            return Err(format!("{}: its metadata has no layer sizes", what()));
        }
        let record = burn::store::ModuleRecord::load(path).map_err(|e| format!("{} is corrupt: {e}", what()))?;
        let model = super::net::load(&meta.dims, &record).map_err(|e| format!("{}: {e}", what()))?;
        Body::Net { model, record }
    };
    Ok(Fitted { meta: meta.clone(), body })
}

impl Registry {
    /// Saves a new version and makes it the active one.
    ///
    /// # Errors
    /// When the artifact or its metadata cannot be written.
    pub async fn register(&self, f: &Fitted) -> Result<i64, String> {
        let path = save_artifact(&self.dir, f)?;
        self.store.insert_model(&f.meta, &path.display().to_string()).await.map_err(|e| e.to_string())
    }

    /// The active versions of a stage, loaded, except those `skip` says are in use
    /// already (series → version). Versions that cannot be loaded are
    /// returned as errors (the caller logs them and trains anew).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn load_active(
        &self,
        key: &str,
        skip: &std::collections::HashMap<String, u32>,
    ) -> Result<Vec<(ModelRow, Result<Fitted, String>)>, String> {
        let rows = self.store.models(Some(key)).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in rows.into_iter().filter(|r| r.active && skip.get(&r.meta.series) != Some(&r.meta.version)) {
            let path = PathBuf::from(&row.path);
            let meta = row.meta.clone();
            let loaded = tokio::task::spawn_blocking(move || load_artifact(&path, &meta)).await.unwrap_or_else(|e| Err(e.to_string()));
            out.push((row, loaded));
        }
        Ok(out)
    }
}
