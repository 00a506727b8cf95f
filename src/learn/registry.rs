//! The model registry: every trained version is an artifact in the registry's
//! [`ArtifactStore`], with its metadata in the state store (the `models` table, whose
//! `path` is the artifact's location) and beside the artifact (`vN.json`), so that a model
//! survives a restart without retraining.
//!
//! Layout: `<stage key>/<series digest>/vN.bpk` (burnpack, burn's format, for the neural
//! models) or `vN.profile.json` (the seasonal baseline): on a single node files under
//! `STATE/models/` ([`LocalDir`], written to a temporary name and renamed, so a crash never
//! leaves half an artifact under the final name); under `--cluster` objects of the same
//! names in the JetStream object store `PREFIX-models`, which every node reads, so the
//! node that takes a pipeline over loads its versions instead of retraining them.
//! Exactly one version per (stage, series) is active: predict uses it; `vigil models
//! promote|rollback` changes which.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::artifacts::{ArtifactError, ArtifactStore, LocalDir};
use super::{Body, Fitted, ModelMeta};
use crate::persist::{BoxFuture, StoreError};

/// A model version in the registry.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelRow {
    pub id: i64,
    pub meta: ModelMeta,
    /// The artifact's path.
    pub path: String,
    /// Whether predict uses this version.
    pub active: bool,
}

/// The model registry's records: versions, which one is active.
pub trait ModelStore: Send + Sync {
    /// Records a new model version — the active one of its (stage, series) when `activate`,
    /// else a candidate beside the active one (a challenger in shadow); returns its id.
    fn insert_model<'a>(&'a self, meta: &'a ModelMeta, path: &'a str, activate: bool) -> BoxFuture<'a, Result<i64, StoreError>>;
    /// The model versions of a stage (or of all stages), oldest first.
    fn models<'a>(&'a self, key: Option<&'a str>) -> BoxFuture<'a, Result<Vec<ModelRow>, StoreError>>;
    /// Makes version `id` the active one of its (stage, series); false when there is no
    /// such version.
    fn activate_model<'a>(&'a self, id: i64) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Records an event in a model's life in the audit trail, under [`ModelEvent::subject`].
    fn record_model_event<'a>(&'a self, event: &'a ModelEvent) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// An event in the life of a model version — `promoted`, `rejected`, `rolled_back` — with
/// who or what caused it; kept in the audit trail beside the incidents'.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEvent {
    pub ts: i64,
    /// The train stage's key.
    pub key: String,
    pub series: String,
    pub event: String,
    pub detail: String,
}

impl ModelEvent {
    /// An event now.
    pub fn now(key: &str, series: &str, event: &str, detail: String) -> ModelEvent {
        ModelEvent { ts: crate::time::now_ms(), key: key.to_owned(), series: series.to_owned(), event: event.to_owned(), detail }
    }

    /// The subject its audit records go under: [`subject`].
    pub fn subject(&self) -> String {
        subject(&self.key, &self.series)
    }
}

/// Where artifacts go, and the store that indexes them.
#[derive(Clone)]
pub struct Registry {
    /// The node's own folder for the registry (`STATE/models`): the artifacts of a single
    /// node, and the shadow periods' records on any.
    pub dir: PathBuf,
    pub store: Arc<dyn ModelStore>,
    /// Where the artifacts are written and read: `dir` on a single node, the JetStream
    /// object store under `--cluster`.
    pub artifacts: Arc<dyn ArtifactStore>,
}

/// The folder of one (stage, series) under `root`: see [`series_prefix`].
pub fn series_dir(root: &Path, key: &str, series: &str) -> PathBuf {
    root.join(series_prefix(key, series))
}

/// The name prefix of one (stage, series): readable stage key, digest of the series
/// identity (`<key>/<digest>`).
pub fn series_prefix(key: &str, series: &str) -> String {
    let digest = Sha256::digest(series.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let safe_key: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~') { c } else { '_' }).collect();
    format!("{safe_key}/{hex}")
}

/// The names of a version's artifact and metadata file, relative to the registry's root:
/// `<key>/<digest>/vN.bpk` (neural models) or `vN.profile.json` (baseline), and `vN.json`.
pub fn artifact_names(meta: &ModelMeta) -> (String, String) {
    let prefix = series_prefix(&meta.key, &meta.series);
    let v = meta.version;
    let body = if meta.kind == "baseline" { format!("{prefix}/v{v}.profile.json") } else { format!("{prefix}/v{v}.bpk") };
    (body, format!("{prefix}/v{v}.json"))
}

/// A version's artifact as bytes: burnpack for the neural models, JSON for the baseline.
///
/// # Errors
/// When the model cannot be serialised.
pub fn encode(f: &Fitted) -> Result<Vec<u8>, String> {
    match &f.body {
        Body::Net { record, .. } => record
            .clone()
            .into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| format!("cannot serialise model {} v{}: {e}", f.meta.key, f.meta.version)),
        Body::Baseline(p) => serde_json::to_vec(p).map_err(|e| e.to_string()),
    }
}

/// A version from its artifact's bytes (`what` names it in errors).
///
/// # Errors
/// When the bytes are corrupt or do not fit the metadata's shape.
pub fn decode(bytes: Vec<u8>, meta: &ModelMeta, what: &str) -> Result<Fitted, String> {
    let body = if meta.kind == "baseline" {
        let p: super::Profile = serde_json::from_slice(&bytes).map_err(|e| format!("{what} is corrupt: {e}"))?;
        if p.season_ms <= 0 || p.bucket_ms <= 0 {
            return Err(format!("{what} is corrupt: a season or bucket is not positive"));
        }
        Body::Baseline(p)
    } else {
        if meta.dims.len() < 2 {
            return Err(format!("{what}: its metadata has no layer sizes"));
        }
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| format!("{what} is corrupt: {e}"))?;
        let model = super::net::load(&meta.dims, &record).map_err(|e| format!("{what}: {e}"))?;
        Body::Net { model, record }
    };
    Ok(Fitted { meta: meta.clone(), body, calibration: Vec::new(), residuals: Vec::new() })
}

impl Registry {
    /// The registry of a single node: artifacts are files under `dir`.
    pub fn local(dir: PathBuf, store: Arc<dyn ModelStore>) -> Registry {
        Registry { artifacts: Arc::new(LocalDir::new(dir.clone())), dir, store }
    }

    /// Writes a version's artifact and its metadata file to the artifact store; returns
    /// the artifact's location.
    ///
    /// # Errors
    /// When the artifact or its metadata cannot be written.
    pub async fn save(&self, f: &Fitted) -> Result<String, String> {
        let (body, meta_name) = artifact_names(&f.meta);
        let location = self.artifacts.put(&body, encode(f)?).await.map_err(|e| e.to_string())?;
        let meta = serde_json::to_vec_pretty(&f.meta).map_err(|e| e.to_string())?;
        self.artifacts.put(&meta_name, meta).await.map_err(|e| e.to_string())?;
        Ok(location)
    }

    /// Saves a new version: the active one when `activate`, else a candidate (a
    /// challenger in shadow).
    ///
    /// # Errors
    /// When the artifact or its metadata cannot be written.
    pub async fn register(&self, f: &Fitted, activate: bool) -> Result<i64, String> {
        let location = self.save(f).await?;
        self.store.insert_model(&f.meta, &location, activate).await.map_err(|e| e.to_string())
    }

    /// Loads the version whose artifact is at `location`.
    ///
    /// # Errors
    /// When the artifact is missing, corrupt, or does not fit the metadata's shape.
    pub async fn load(&self, location: &str, meta: &ModelMeta) -> Result<Fitted, String> {
        let what = format!("model {} v{} ({location})", meta.key, meta.version);
        let bytes = self.artifacts.get(location).await.map_err(|e| match e {
            ArtifactError::Missing(_) => format!("{what} is missing"),
            ArtifactError::Failed(e) => format!("cannot read {what}: {e}"),
        })?;
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || decode(bytes, &meta, &what)).await.unwrap_or_else(|e| Err(e.to_string()))
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
            let loaded = self.load(&row.path, &row.meta).await;
            out.push((row, loaded));
        }
        Ok(out)
    }
}

/// The subject of a model's audit records (promotions, rejections, rollbacks):
/// `model:<stage key>:<series>`.
pub fn subject(key: &str, series: &str) -> String {
    format!("model:{key}:{series}")
}

/// Makes version `id` the active one of its (stage, series) — `vigil models promote`, the
/// API, the console — and audits it with who did it and, when the version ran in shadow,
/// the figures of its shadow period (`models`: the registry's folder). False when there is
/// no such version.
///
/// # Errors
/// When the store cannot be read or written.
pub async fn promote(store: &dyn ModelStore, models: Option<&Path>, id: i64, by: &str) -> Result<bool, StoreError> {
    let rows = store.models(None).await?;
    let Some(row) = rows.iter().find(|r| r.id == id) else { return Ok(false) };
    let before = rows.iter().find(|r| r.active && r.meta.key == row.meta.key && r.meta.series == row.meta.series);
    if !store.activate_model(id).await? {
        return Ok(false);
    }
    let figures = models.and_then(|m| super::shadow::summary(m, &row.meta)).map(|s| format!(": {s}")).unwrap_or_default();
    let detail = format!(
        "v{} promoted by {by} (v{} was active){figures}",
        row.meta.version,
        before.map_or("-".into(), |b| b.meta.version.to_string())
    );
    store.record_model_event(&ModelEvent::now(&row.meta.key, &row.meta.series, "promoted", detail)).await?;
    Ok(true)
}

/// What rolling back did to one series of a stage.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RolledBack {
    /// Version `from` was active; version `to` (id `id`) is now.
    Rolled { series: String, from: u32, to: u32, id: i64 },
    /// The active version is the oldest: nothing to roll back to.
    Oldest { series: String, version: u32 },
}

/// Makes the version before the active one active again, for every series of a stage
/// (or only `series`): `vigil models rollback`, the API and the console. Series without
/// an active version are left alone. Every rollback is audited with who asked (`by`).
///
/// # Errors
/// When the store cannot be read or written.
pub async fn rollback(store: &dyn ModelStore, stage: &str, series: Option<&str>, by: &str) -> Result<Vec<RolledBack>, StoreError> {
    let mut by_series: std::collections::BTreeMap<String, Vec<ModelRow>> = Default::default();
    for r in store.models(Some(stage)).await? {
        by_series.entry(r.meta.series.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (s, versions) in by_series {
        if series.is_some_and(|want| want != s) {
            continue;
        }
        let Some(active) = versions.iter().position(|r| r.active) else { continue };
        if active == 0 {
            out.push(RolledBack::Oldest { series: s, version: versions[0].meta.version });
            continue;
        }
        let prev = &versions[active - 1];
        store.activate_model(prev.id).await?;
        let detail = format!("v{} → v{} by {by}", versions[active].meta.version, prev.meta.version);
        store.record_model_event(&ModelEvent::now(stage, &s, "rolled_back", detail)).await?;
        out.push(RolledBack::Rolled { series: s, from: versions[active].meta.version, to: prev.meta.version, id: prev.id });
    }
    Ok(out)
}
