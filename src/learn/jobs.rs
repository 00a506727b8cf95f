//! Training as jobs: what a train stage hands to another node to train, and the seam
//! ([`Trainer`]) through which it does.
//!
//! - **Input**: a [`TrainJob`]: the stage key, series and version to train, the spec,
//!   the samples (or where they are, when they are too big for one message), and the
//!   warm-start version's artifact.
//! - **Output**: a [`Trained`]: the version's registry id, its artifact's location and
//!   metadata, and which node trained it.
//! - **Implementation**: `src/cluster/train.rs`, a JetStream work queue (under
//!   `vigil run --cluster`). Without it a train stage trains on its own thread.
//!
//! A job is identified by (stage key, series, version): the registry holds at most one
//! version per triple, so a job delivered twice registers one version.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{ModelMeta, Spec};
use crate::persist::BoxFuture;
use crate::time::Timestamp;

/// A training to run on any node.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainJob {
    /// Unique per submission (for matching the answer).
    pub id: String,
    /// The train stage's key, fingerprint and pipeline version.
    pub key: String,
    pub fingerprint: String,
    pub pipeline_version: String,
    pub series: String,
    pub version: u32,
    pub regime_from: Option<Timestamp>,
    pub spec: Spec,
    /// Whether the version goes straight to active (else it is a challenger in shadow).
    pub activate: bool,
    /// The samples, unless they are in the object store ([`TrainJob::samples_at`]).
    pub samples: Option<Samples>,
    /// Where the samples are when they did not fit in one message.
    pub samples_at: Option<String>,
    /// The version to warm start from.
    pub warm: Option<WarmStart>,
    /// The node that submitted it (the pipeline's owner) and where it waits for the
    /// answer.
    pub owner: String,
    pub reply: String,
    /// When it was submitted (Unix ms).
    pub submitted_at: i64,
}

/// A series' training data.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Samples {
    pub ts: Vec<Timestamp>,
    pub values: Vec<f64>,
    pub exclude: Vec<bool>,
    pub normal: Vec<bool>,
}

/// The version a job warm starts from: its registry location and metadata.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WarmStart {
    pub location: String,
    pub meta: ModelMeta,
}

/// A job's outcome, as the node that ran it reports it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Trained {
    /// The registry id.
    pub id: i64,
    /// Where the artifact is.
    pub location: String,
    pub meta: ModelMeta,
    /// The held-out errors and residuals the version carries (see [`super::Fitted`]);
    /// empty when the owner learned of the version from the registry.
    #[serde(default)]
    pub calibration: Vec<f64>,
    #[serde(default)]
    pub residuals: Vec<f64>,
    /// The node that trained it.
    pub node: String,
}

/// Trains jobs elsewhere.
pub trait Trainer: Send + Sync {
    /// Submits `job` and waits for the version it trained (or why it failed). Stops
    /// waiting, with an error, once `cancel` is set (the stage was dropped); the job
    /// itself still runs and registers its version.
    fn train<'a>(&'a self, job: TrainJob, cancel: Arc<AtomicBool>) -> BoxFuture<'a, Result<Trained, String>>;
    /// This node's name (recorded with the jobs it submits).
    fn node(&self) -> &str;
}

/// A cluster's side of the registry: where artifacts are kept and who trains.
#[derive(Clone)]
pub struct Remote {
    pub artifacts: Arc<dyn super::artifacts::ArtifactStore>,
    pub trainer: Arc<dyn Trainer>,
}
