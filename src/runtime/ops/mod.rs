//! The implementations of the built-in operators (sources and ops), what building them
//! needs ([`BuildEnv`]), and [`build`], which makes a stage's [`Step`] from its planned
//! node through the operator registry (`src/operators/`: each operator's typed
//! parameters, validation and build live in its own file there).

pub mod breach;
pub mod budget;
pub mod collect;
pub mod correlate;
pub mod learn;
pub mod logs;
pub mod predict;
pub mod preprocess;
pub mod respond;
pub mod tail;

use std::path::{Path, PathBuf};

use crate::value::SecretRef;

/// What building a stage needs besides its node.
#[derive(Clone)]
pub struct BuildEnv {
    pub pipeline: String,
    /// Relative paths in parameters are relative to the pipeline file's directory.
    pub base_dir: PathBuf,
    /// The state directory (`log` writes `outbox.jsonl` there).
    pub state_dir: Option<PathBuf>,
    pub client: reqwest::Client,
    /// The pipeline's webhook event queue, when it has an `on webhook` trigger.
    pub webhook_queue: Option<collect::EventQueue>,
    /// The content hash of the sources, recorded with every trained model.
    pub pipeline_version: String,
    /// Incidents, silences, channels and the outbox (a responder without a store when
    /// nothing is sent, as in replays).
    pub responder: std::sync::Arc<crate::respond::Responder>,
    /// Under `vigil run`: the model registry, and training on threads of its own. Without
    /// it (replay, eval) training runs inline and models live in memory.
    pub models: Option<learn::BackgroundEnv>,
    /// Under `vigil run`: file sources without `start_at` start at the end of a file they
    /// meet for the first time, not at its beginning.
    pub live: bool,
}

impl BuildEnv {
    /// An environment for running a pipeline outside the engine (`vigil replay`,
    /// `vigil eval`, `vigil test`): no state directory, no webhooks, models in memory with
    /// training inline.
    pub fn offline(pipeline: &str, base_dir: &std::path::Path, responder: std::sync::Arc<crate::respond::Responder>) -> BuildEnv {
        BuildEnv {
            pipeline: pipeline.to_owned(),
            base_dir: base_dir.to_path_buf(),
            state_dir: None,
            client: reqwest::Client::new(),
            webhook_queue: None,
            pipeline_version: String::new(),
            models: None,
            responder,
            live: false,
        }
    }
}

/// Why a stage could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("operator `{0}` is not implemented yet (it comes with {1})")]
    NotImplemented(&'static str, &'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Resolves a secret reference. The value is never logged.
///
/// # Errors
/// When the variable is unset or the file unreadable (naming the reference, not the value).
pub fn resolve_secret(s: &SecretRef) -> Result<String, BuildError> {
    match s {
        SecretRef::Env(name) => std::env::var(name).map_err(|_| BuildError::Invalid(format!("the secret {s} is not set"))),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| BuildError::Invalid(format!("cannot read the secret {s}: {e}"))),
    }
}

/// A path in a parameter, relative to the pipeline file's directory unless absolute.
pub(crate) fn path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The environment's HTTP client, or one with this timeout.
///
/// # Errors
/// When the client cannot be made.
pub(crate) fn client_with_timeout(env: &BuildEnv, timeout: Option<i64>) -> Result<reqwest::Client, BuildError> {
    match timeout {
        None => Ok(env.client.clone()),
        Some(ms) => reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(ms.max(1) as u64))
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Invalid(format!("cannot make an HTTP client: {e}"))),
    }
}
