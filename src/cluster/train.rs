//! Training as jobs (`vigil run --cluster`): a train stage's trainings go to a JetStream
//! work queue; any node with a free slot trains; the artifacts go to the JetStream object
//! store, the metadata to PostgreSQL; the pipeline's owner picks up the new version.
//! docs/cluster.md ("Training as jobs") tells the design and the failure cases tested.
//!
//! - **Input**: [`TrainJob`]s published by the owners' train stages ([`Queue`], the
//!   [`Trainer`] of every node) on `PREFIX.train.jobs`, kept by the stream `PREFIX-train`
//!   (work-queue retention: a job is removed once a worker acknowledges it).
//! - **Output**: a registered version per job: its artifact in the object store
//!   `PREFIX-models` ([`Objects`], locations `nats-object://PREFIX-models/<name>`), its
//!   row in the `models` table, a `trained` audit record naming the node that trained it,
//!   and an answer on the owner's subject `PREFIX.train.done.<owner>`.
//! - **Invariants**: a node trains at most `--train-slots` jobs at once (0: none). A
//!   job is acknowledged only once its version is registered; while it trains, its worker
//!   sends in-progress acknowledgements every [`ACK_WAIT`]/3, so a job whose worker died is
//!   delivered again [`ACK_WAIT`] after its last one. A job is identified by (stage key,
//!   series, version): one whose version is registered already, or whose stage is not in
//!   the plan (or was changed since), is acknowledged and dropped with a log line; a
//!   payload that is not a job is too. A job too big for one NATS message carries its
//!   samples in the object store instead (`jobs/<id>`, removed once trained).
//!
//! The owner waits for the answer and also looks in the registry every
//! [`REGISTRY_POLL`], so a lost answer (the owner was cut off from NATS) delays the
//! version but does not lose it; an owner that died is replaced by one that loads the
//! version from the registry at start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, object_store, stream, AckKind};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::{connect_js, shown, ClusterError, Options};
use crate::learn::artifacts::{read_file, ArtifactError, ArtifactStore};
use crate::learn::jobs::{Remote, Samples, TrainJob, Trained, Trainer};
use crate::learn::registry::{ModelEvent, ModelStore, Registry};
use crate::learn::{self, Examples, FitContext};
use crate::persist::BoxFuture;

/// How long a job delivered to a worker stays its own without an acknowledgement: a job
/// whose worker died is delivered again this long after its last sign of life.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// How often an owner waiting for a job looks in the registry for its version.
pub const REGISTRY_POLL: Duration = Duration::from_secs(5);

/// Deliveries of one job before it is given up (a job that fails to register its
/// version this often is acknowledged, and its owner told).
pub const MAX_DELIVER: i64 = 5;

/// The scheme of the locations of [`Objects`].
pub const SCHEME: &str = "nats-object://";

/// How long one NATS operation may take.
const OP: Duration = Duration::from_secs(30);

/// A node's side of training as jobs: the shared artifact store and the queue for the
/// engine ([`Remote`]), and this node's worker unless `--train-slots 0`.
pub struct Training {
    pub remote: Remote,
    pub worker: Option<Worker>,
}

/// Connects to the cluster's NATS for training: opens (or creates) the object store
/// `PREFIX-models` and the work-queue stream `PREFIX-train`, and subscribes to this
/// node's answers. `store`: the shared model registry records; `dir`: this node's
/// `STATE/models` (shadow records); `slots`: how many jobs this node trains at once.
///
/// # Errors
/// NATS unreachable or without JetStream, a stream that cannot be opened or created.
pub async fn connect(opts: &Options, store: Arc<dyn ModelStore>, dir: PathBuf, slots: usize) -> Result<Training, ClusterError> {
    let url = shown(&opts.url);
    let js = connect_js(&opts.url, &format!("vigil {} training (pid {})", opts.node, std::process::id())).await?;
    let client = js.client();
    // What the server accepts in one message (NATS's default, 1 MiB, if it did not say).
    let max_payload = Some(client.server_info().max_payload).filter(|&m| m > 0).unwrap_or(1024 * 1024);
    let objects = Arc::new(Objects::open(&js, &url, &format!("{}-models", opts.prefix), max_payload).await?);
    let subject = format!("{}.train.jobs", opts.prefix);
    let queue_stream = work_queue(&js, &url, &format!("{}-train", opts.prefix), &subject).await?;
    let reply = format!("{}.train.done.{}", opts.prefix, opts.node);
    let waiting: Waiting = Arc::default();
    let mut answers = client.subscribe(reply.clone()).await.map_err(|e| ClusterError::Bucket {
        url: url.clone(),
        bucket: reply.clone(),
        reason: format!("cannot subscribe: {e}"),
    })?;
    let dispatch = waiting.clone();
    tokio::spawn(async move {
        while let Some(m) = answers.next().await {
            match serde_json::from_slice::<Answer>(&m.payload) {
                Ok(a) => {
                    if let Some(tx) = dispatch.lock().unwrap_or_else(|e| e.into_inner()).remove(&a.job) {
                        let _ = tx.send(a.result);
                    }
                }
                Err(e) => tracing::warn!("an answer to a training job that is not one ({e}); ignored"),
            }
        }
    });
    let queue = Queue {
        js: js.clone(),
        subject,
        reply,
        node: opts.node.clone(),
        objects: objects.clone(),
        store: store.clone(),
        waiting,
        max_payload,
    };
    let worker = if slots == 0 {
        None
    } else {
        let consumer: consumer::PullConsumer = tokio::time::timeout(
            OP,
            queue_stream.get_or_create_consumer(
                "trainers",
                consumer::pull::Config {
                    durable_name: Some("trainers".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_deliver: MAX_DELIVER,
                    ..Default::default()
                },
            ),
        )
        .await
        .map_err(|_| ClusterError::Bucket { url: url.clone(), bucket: queue_stream_name(opts), reason: "no answer within 30 s".into() })?
        .map_err(|e| ClusterError::Bucket { url: url.clone(), bucket: queue_stream_name(opts), reason: e.to_string() })?;
        let registry = Registry { dir, store: store.clone(), artifacts: objects.clone() };
        Some(Worker { consumer, client, registry, objects: objects.clone(), node: opts.node.clone(), slots })
    };
    tracing::info!(node = %opts.node, slots, bucket = %objects.bucket, queue = %queue_stream_name(opts), "training as jobs: ready");
    Ok(Training { remote: Remote { artifacts: objects, trainer: Arc::new(queue) }, worker })
}

fn queue_stream_name(opts: &Options) -> String {
    format!("{}-train", opts.prefix)
}

/// Opens the work-queue stream `name` on `subject`, creating it when missing (by hand,
/// as the key-value buckets: see [`super::bucket`]).
async fn work_queue(js: &jetstream::Context, url: &str, name: &str, subject: &str) -> Result<stream::Stream, ClusterError> {
    let err = |reason: String| ClusterError::Bucket { url: url.to_owned(), bucket: name.to_owned(), reason };
    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), js.get_stream(name)).await {
        return Ok(s);
    }
    let config = stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        // A job nobody took in a day is stale (its owner gave up or was replaced).
        max_age: Duration::from_secs(24 * 3600),
        num_replicas: 1,
        ..Default::default()
    };
    let created = match tokio::time::timeout(Duration::from_secs(5), js.create_stream(config)).await {
        Ok(Ok(s)) => return Ok(s),
        // Another node created it meanwhile (then it opens below).
        Ok(Err(e)) => e.to_string(),
        Err(_) => return Err(err("no answer within 5 s".into())),
    };
    match tokio::time::timeout(Duration::from_secs(5), js.get_stream(name)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(_)) => Err(err(created)),
        Err(_) => Err(err("no answer within 5 s".into())),
    }
}

// ---------------------------------------------------------------- the object store

/// The JetStream object store `PREFIX-models`: the artifacts every node reads.
pub struct Objects {
    store: object_store::ObjectStore,
    bucket: String,
    /// Chunks fit in one NATS message.
    chunk: usize,
}

impl Objects {
    /// Opens the bucket, creating it when missing.
    ///
    /// # Errors
    /// When it can neither be opened nor created.
    pub async fn open(js: &jetstream::Context, url: &str, bucket: &str, max_payload: usize) -> Result<Objects, ClusterError> {
        let err = |reason: String| ClusterError::Bucket { url: url.to_owned(), bucket: bucket.to_owned(), reason };
        let chunk = (128 * 1024).min(max_payload / 2);
        if let Ok(Ok(store)) = tokio::time::timeout(Duration::from_secs(5), js.get_object_store(bucket)).await {
            return Ok(Objects { store, bucket: bucket.to_owned(), chunk });
        }
        let config =
            object_store::Config { bucket: bucket.to_owned(), storage: stream::StorageType::File, num_replicas: 1, ..Default::default() };
        let created = match tokio::time::timeout(Duration::from_secs(5), js.create_object_store(config)).await {
            Ok(Ok(store)) => return Ok(Objects { store, bucket: bucket.to_owned(), chunk }),
            Ok(Err(e)) => e.to_string(),
            Err(_) => return Err(err("no answer within 5 s".into())),
        };
        match tokio::time::timeout(Duration::from_secs(5), js.get_object_store(bucket)).await {
            Ok(Ok(store)) => Ok(Objects { store, bucket: bucket.to_owned(), chunk }),
            Ok(Err(_)) => Err(err(created)),
            Err(_) => Err(err("no answer within 5 s".into())),
        }
    }

    /// The object name of a location of this bucket.
    fn name<'a>(&self, location: &'a str) -> Result<&'a str, ArtifactError> {
        let rest =
            location.strip_prefix(SCHEME).ok_or_else(|| ArtifactError::Failed(format!("`{location}` is not a {SCHEME} location")))?;
        match rest.split_once('/') {
            Some((bucket, name)) if bucket == self.bucket && !name.is_empty() => Ok(name),
            _ => Err(ArtifactError::Failed(format!("`{location}` is not in the object store `{}`", self.bucket))),
        }
    }
}

impl ArtifactStore for Objects {
    fn put<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<String, ArtifactError>> {
        Box::pin(async move {
            let meta = object_store::ObjectMetadata { name: name.to_owned(), chunk_size: Some(self.chunk), ..Default::default() };
            match tokio::time::timeout(OP, self.store.put(meta, &mut bytes.as_slice())).await {
                Ok(Ok(_)) => Ok(format!("{SCHEME}{}/{name}", self.bucket)),
                Ok(Err(e)) => Err(ArtifactError::Failed(format!("cannot write `{name}` to the object store `{}`: {e}", self.bucket))),
                Err(_) => Err(ArtifactError::Failed(format!(
                    "cannot write `{name}` to the object store `{}`: no answer within 30 s",
                    self.bucket
                ))),
            }
        })
    }

    fn get<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ArtifactError>> {
        Box::pin(async move {
            // A version registered before the node joined a cluster: a file of its own.
            if !location.starts_with(SCHEME) {
                return read_file(location);
            }
            let name = self.name(location)?;
            let read = async {
                let mut object = match self.store.get(name).await {
                    Ok(o) => o,
                    Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Err(ArtifactError::Missing(location.to_owned())),
                    Err(e) => return Err(ArtifactError::Failed(format!("cannot read `{location}`: {e}"))),
                };
                let mut bytes = Vec::new();
                object.read_to_end(&mut bytes).await.map_err(|e| ArtifactError::Failed(format!("cannot read `{location}`: {e}")))?;
                Ok(bytes)
            };
            tokio::time::timeout(OP, read)
                .await
                .unwrap_or_else(|_| Err(ArtifactError::Failed(format!("cannot read `{location}`: no answer within 30 s"))))
        })
    }

    fn delete<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<(), ArtifactError>> {
        Box::pin(async move {
            let name = self.name(location)?;
            match tokio::time::timeout(OP, self.store.delete(name)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
                Ok(Err(e)) => Err(ArtifactError::Failed(format!("cannot remove `{location}`: {e}"))),
                Err(_) => Err(ArtifactError::Failed(format!("cannot remove `{location}`: no answer within 30 s"))),
            }
        })
    }
}

// ---------------------------------------------------------------- submitting

/// What a worker answers on the owner's subject.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Answer {
    /// The job's id.
    job: String,
    result: Result<Trained, String>,
}

type Waiting = Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<Result<Trained, String>>>>>;

/// The [`Trainer`] of a cluster node: publishes jobs on the work queue and waits for
/// their answers.
pub struct Queue {
    js: jetstream::Context,
    subject: String,
    reply: String,
    node: String,
    objects: Arc<Objects>,
    store: Arc<dyn ModelStore>,
    waiting: Waiting,
    max_payload: usize,
}

impl Queue {
    async fn submit(&self, mut job: TrainJob) -> Result<Option<String>, String> {
        job.owner = self.node.clone();
        job.reply = self.reply.clone();
        let mut payload = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
        let mut samples_at = None;
        // Room for the headers JetStream adds.
        if payload.len() + 1024 > self.max_payload {
            let samples = job.samples.take().unwrap_or_default();
            let bytes = serde_json::to_vec(&samples).map_err(|e| e.to_string())?;
            tracing::info!(
                stage = %job.key, series = %job.series, version = job.version, bytes = payload.len(), max_payload = self.max_payload,
                "the job is too big for one message: its samples go to the object store"
            );
            let name = format!("jobs/{}", job.id);
            let location = self.objects.put(&name, bytes).await.map_err(|e| format!("cannot store the job's samples: {e}"))?;
            job.samples_at = Some(location.clone());
            samples_at = Some(location);
            payload = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
        }
        let published = async {
            let ack = self.js.publish(self.subject.clone(), payload.into()).await.map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(OP, published).await {
            Ok(Ok(_)) => Ok(samples_at),
            Ok(Err(e)) => Err(format!("cannot submit the training job: {e}")),
            Err(_) => Err("cannot submit the training job: NATS did not answer within 30 s".into()),
        }
    }

    /// The version of `job` if the registry has it.
    async fn registered(&self, key: &str, series: &str, version: u32) -> Option<Trained> {
        let rows = self.store.models(Some(key)).await.ok()?;
        let r = rows.into_iter().find(|r| r.meta.series == series && r.meta.version == version)?;
        Some(from_registry(r))
    }
}

impl Trainer for Queue {
    fn train<'a>(&'a self, job: TrainJob, cancel: Arc<AtomicBool>) -> BoxFuture<'a, Result<Trained, String>> {
        Box::pin(async move {
            let (id, key, series, version) = (job.id.clone(), job.key.clone(), job.series.clone(), job.version);
            let (tx, mut rx) = tokio::sync::oneshot::channel();
            // Waiting before the job is out: the answer cannot come first.
            self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), tx);
            let forget = || self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            if let Err(e) = self.submit(job).await {
                forget();
                return Err(e);
            }
            tracing::info!(stage = %key, series = %series, version, job = %id, "training job submitted to the cluster's work queue");
            let started = Instant::now();
            let mut poll = tokio::time::interval(REGISTRY_POLL);
            poll.tick().await;
            let out = loop {
                tokio::select! {
                    answer = &mut rx => break answer.unwrap_or_else(|_| Err("the answer was lost".into())),
                    _ = poll.tick() => {
                        if cancel.load(Ordering::Relaxed) {
                            break Err("the stage was dropped while its training job ran".into());
                        }
                        if let Some(t) = self.registered(&key, &series, version).await {
                            break Ok(t);
                        }
                        if started.elapsed() >= Duration::from_secs(60) && started.elapsed() < Duration::from_secs(60) + REGISTRY_POLL {
                            tracing::warn!(stage = %key, series = %series, version, "no node has trained the job for a minute: is every node run with --train-slots 0?");
                        }
                    }
                }
            };
            forget();
            out
        })
    }

    fn node(&self) -> &str {
        &self.node
    }
}

// ---------------------------------------------------------------- working

/// A node's worker: pulls jobs when it has a free slot and trains them.
pub struct Worker {
    consumer: consumer::PullConsumer,
    client: async_nats::Client,
    registry: Registry,
    objects: Arc<Objects>,
    node: String,
    slots: usize,
}

/// Whether the plan has a stage (key, fingerprint): jobs for others are dropped.
pub type HasStage = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

impl Worker {
    /// Pulls and trains jobs, at most `slots` at once, until `cancel`; a job training
    /// then is stopped between epochs and left to be delivered again (to another node).
    pub async fn run(self, has_stage: HasStage, cancel: CancellationToken) {
        let me = Arc::new(self);
        let slots = Arc::new(tokio::sync::Semaphore::new(me.slots));
        let tasks = tokio_util::task::TaskTracker::new();
        loop {
            let permit = tokio::select! {
                () = cancel.cancelled() => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let batch = me.consumer.batch().max_messages(1).expires(Duration::from_secs(5)).messages();
            let mut messages = match tokio::time::timeout(Duration::from_secs(10), batch).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(node = %me.node, "cannot pull training jobs: {e}; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => {
                    tracing::warn!(node = %me.node, "cannot pull training jobs: NATS did not answer; trying again");
                    continue;
                }
            };
            let next = tokio::select! {
                () = cancel.cancelled() => break,
                m = messages.next() => m,
            };
            match next {
                Some(Ok(msg)) => {
                    let (me, has_stage, cancel) = (me.clone(), has_stage.clone(), cancel.clone());
                    tasks.spawn(async move {
                        me.process(msg, &has_stage, &cancel).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(node = %me.node, "pulling training jobs: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => {}
            }
        }
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), tasks.wait()).await;
    }

    /// Runs one job to its acknowledgement.
    async fn process(&self, msg: jetstream::Message, has_stage: &HasStage, cancel: &CancellationToken) {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let mut job: TrainJob = match serde_json::from_slice(&msg.payload) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(node = %self.node, bytes = msg.payload.len(), "a message of the training queue is not a training job ({e}); dropped");
                self.finish(&msg, AckKind::Ack).await;
                return;
            }
        };
        let (key, series, version) = (job.key.clone(), job.series.clone(), job.version);
        if !has_stage(&job.key, &job.fingerprint) {
            tracing::warn!(node = %self.node, stage = %key, series = %series, version, "a training job for a stage that is not in the plan (removed, or changed since); dropped");
            self.finish(&msg, AckKind::Ack).await;
            self.answer(&job, Err("the stage is not in the plan of the node that took the job".into())).await;
            return;
        }
        match self.registry.store.models(Some(&job.key)).await {
            Ok(rows) => {
                if let Some(r) = rows.into_iter().find(|r| r.meta.series == job.series && r.meta.version == job.version) {
                    tracing::info!(node = %self.node, stage = %key, series = %series, version, "a training job whose version is registered already; dropped");
                    self.finish(&msg, AckKind::Ack).await;
                    self.answer(&job, Ok(from_registry(r))).await;
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(node = %self.node, stage = %key, "cannot read the model registry ({e}); the job is delivered again");
                self.finish(&msg, AckKind::Nak(Some(Duration::from_secs(2)))).await;
                return;
            }
        }
        let samples = match (job.samples.take(), job.samples_at.clone()) {
            (Some(s), _) => Ok(s),
            (None, Some(at)) => match self.objects.get(&at).await {
                Ok(bytes) => serde_json::from_slice::<Samples>(&bytes).map_err(|e| format!("the job's samples at `{at}` are corrupt: {e}")),
                Err(ArtifactError::Missing(_)) => Err(format!("the job's samples at `{at}` are missing")),
                Err(e) => {
                    tracing::warn!(node = %self.node, stage = %key, "cannot read the job's samples ({e}); the job is delivered again");
                    self.finish(&msg, AckKind::Nak(Some(Duration::from_secs(2)))).await;
                    return;
                }
            },
            (None, None) => Err("the job carries no samples".into()),
        };
        let samples = match samples {
            Ok(s) if s.ts.len() == s.values.len() => s,
            Ok(s) => {
                let e = format!("the job's samples are corrupt: {} timestamps, {} values", s.ts.len(), s.values.len());
                self.reject(&msg, &job, e).await;
                return;
            }
            Err(e) => {
                self.reject(&msg, &job, e).await;
                return;
            }
        };
        let warm = match &job.warm {
            Some(w) => match self.registry.load(&w.location, &w.meta).await {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(node = %self.node, stage = %key, series = %series, "cannot load the warm-start version ({e}); training from scratch");
                    None
                }
            },
            None => None,
        };
        let cx = FitContext {
            key: job.key.clone(),
            series: job.series.clone(),
            version: job.version,
            fingerprint: job.fingerprint.clone(),
            pipeline_version: job.pipeline_version.clone(),
            regime_from: job.regime_from,
        };
        let spec = job.spec.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let started = Instant::now();
        let warm_from = warm.as_ref().map(|f| f.meta.version);
        tracing::info!(node = %self.node, stage = %key, series = %series, version, owner = %job.owner, delivered, warm_from, "training a job of the work queue");
        let fit = tokio::task::spawn_blocking(move || {
            let data = Examples { ts: &samples.ts, values: &samples.values, exclude: &samples.exclude, normal: &samples.normal };
            learn::fit(&spec, &cx, data, warm.as_ref(), &flag, &mut |_, _, _| {})
        });
        tokio::pin!(fit);
        let mut progress = tokio::time::interval(ACK_WAIT / 3);
        progress.tick().await;
        let mut stopping = false;
        let result = loop {
            tokio::select! {
                r = &mut fit => break r,
                _ = progress.tick() => {
                    // Still alive: the job stays this worker's.
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
                () = cancel.cancelled(), if !stopping => {
                    stop.store(true, Ordering::Relaxed);
                    stopping = true;
                }
            }
        };
        let f = match result {
            Ok(Ok(f)) => f,
            Ok(Err(learn::TrainError::Cancelled)) | Err(_) if stopping => {
                tracing::info!(node = %self.node, stage = %key, series = %series, version, "stopping: the training job is left to another node");
                self.finish(&msg, AckKind::Nak(None)).await;
                return;
            }
            Ok(Err(e)) => {
                self.reject(&msg, &job, format!("training failed on node {}: {e}", self.node)).await;
                return;
            }
            Err(e) => {
                self.reject(&msg, &job, format!("training failed on node {}: {e}", self.node)).await;
                return;
            }
        };
        let registered = async {
            let location = self.registry.save(&f).await?;
            let id = self.registry.store.insert_model(&f.meta, &location, job.activate).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((id, location))
        };
        let (id, location) = match registered.await {
            Ok(r) => r,
            Err(e) if delivered < MAX_DELIVER => {
                tracing::warn!(node = %self.node, stage = %key, series = %series, version, "cannot register the trained version ({e}); the job is delivered again");
                self.finish(&msg, AckKind::Nak(Some(Duration::from_secs(2)))).await;
                return;
            }
            Err(e) => {
                self.reject(&msg, &job, format!("cannot register the trained version after {delivered} tries: {e}")).await;
                return;
            }
        };
        let train_ms = started.elapsed().as_millis() as u64;
        let detail = format!("v{version} trained by node {} in {train_ms} ms (a job of {})", self.node, job.owner);
        if let Err(e) = self.registry.store.record_model_event(&ModelEvent::now(&key, &series, "trained", detail)).await {
            tracing::warn!(stage = %key, "cannot audit the training: {e}");
        }
        self.finish(&msg, AckKind::Ack).await;
        if let Some(at) = &job.samples_at {
            let _ = self.objects.delete(at).await;
        }
        tracing::info!(
            node = %self.node, stage = %key, series = %series, version, id, owner = %job.owner, loss = f.meta.loss, train_ms,
            location = %location, "trained a job of the work queue"
        );
        let t = Trained { id, location, meta: f.meta.clone(), calibration: f.calibration, residuals: f.residuals, node: self.node.clone() };
        self.answer(&job, Ok(t)).await;
    }

    /// A job that cannot succeed (its data, its training): acknowledged, its owner told.
    async fn reject(&self, msg: &jetstream::Message, job: &TrainJob, reason: String) {
        tracing::warn!(node = %self.node, stage = %job.key, series = %job.series, version = job.version, "training job dropped: {reason}");
        self.finish(msg, AckKind::Ack).await;
        if let Some(at) = &job.samples_at {
            let _ = self.objects.delete(at).await;
        }
        self.answer(job, Err(reason)).await;
    }

    async fn finish(&self, msg: &jetstream::Message, kind: AckKind) {
        if let Err(e) =
            tokio::time::timeout(Duration::from_secs(5), msg.ack_with(kind)).await.unwrap_or_else(|_| Err("no answer within 5 s".into()))
        {
            tracing::warn!(node = %self.node, "cannot acknowledge a training job ({e}); it may be delivered again (and then dropped as done)");
        }
    }

    async fn answer(&self, job: &TrainJob, result: Result<Trained, String>) {
        if job.reply.is_empty() {
            return;
        }
        let a = Answer { job: job.id.clone(), result };
        let Ok(payload) = serde_json::to_vec(&a) else { return };
        if let Err(e) = self.client.publish(job.reply.clone(), payload.into()).await {
            tracing::warn!(node = %self.node, "cannot answer the owner of a training job ({e}); it finds the version in the registry");
        }
        let _ = self.client.flush().await;
    }
}

/// A version found in the registry rather than trained here: its record, without the
/// held-out errors a fresh training carries (its predict stage calibrates from live errors).
fn from_registry(r: crate::learn::registry::ModelRow) -> Trained {
    Trained {
        id: r.id,
        location: r.path,
        meta: r.meta,
        calibration: Vec::new(),
        residuals: Vec::new(),
        node: "(read from the registry)".into(),
    }
}
