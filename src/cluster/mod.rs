//! Several nodes (`vigil run --cluster nats://HOST:PORT`): which node runs which pipeline,
//! by lease in NATS JetStream key-value buckets. docs/cluster.md tells the design and
//! the failure cases the tests cover.
//!
//! - **Input**: the pipelines of the plan ([`Owner::pipelines`]), a NATS server with
//!   JetStream, a shared PostgreSQL store ([`LeaseStore`]).
//! - **Output**: the set of pipelines this node runs, each under a [`Fence`]
//!   ([`Owner::own`]), changed as leases are taken, lost and handed over.
//! - **Invariants**: a pipeline is run by the node holding its lease in the bucket
//!   `PREFIX-leases` (taken with compare-and-set on an absent key, renewed every
//!   `ttl / 3` with compare-and-set on the revision last written; the bucket's `max_age`
//!   is the TTL). A node that could not renew a lease for `ttl - renew` stops the
//!   pipeline before the lease can expire. Every write for a pipeline carries the fencing
//!   revision its node took in PostgreSQL when it acquired the lease; the store refuses
//!   older ones, so a node that was paused and wakes up after losing the lease changes
//!   nothing. Nodes announce themselves in `PREFIX-nodes` (same TTL) with how many
//!   pipelines they hold; each node holds at most `ceil(pipelines / nodes)`, and one
//!   above `floor(pipelines / nodes)` hands one over while a node holds fewer than that:
//!   the spread ends within one pipeline of even.
//!
//! Cancellation: [`Cluster::run`] returns when its token is cancelled, after releasing
//! its leases (the engine has stopped by then), so that other nodes take over at once
//! instead of after the TTL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::persist::{BoxFuture, Fence, StoreError};

pub mod train;

/// The default lease TTL: renewed every 2 s, a dead node's pipelines are taken over
/// 4–8 s after it died.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6);

/// How a node joins the cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Names the buckets: `PREFIX-leases`, `PREFIX-nodes` (clusters sharing one NATS
    /// server, tests, give each their own).
    pub prefix: String,
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
}

impl Options {
    /// How often leases are renewed: a third of the TTL, so that one lost renewal does
    /// not lose the lease.
    pub fn renew(&self) -> Duration {
        self.ttl / 3
    }

    /// How long a node may go without renewing a lease before it stops the pipeline:
    /// one renewal period before the lease can expire.
    pub fn give_up(&self) -> Duration {
        self.ttl.saturating_sub(self.renew())
    }

    /// Checks the names: a node name and prefix are NATS key and bucket names.
    ///
    /// # Errors
    /// A name with other characters than letters, digits, `-` and `_`, or a TTL under 1 s.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let ok = |s: &str| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok(&self.node) {
            return Err(ClusterError::Name { what: "--node", name: self.node.clone() });
        }
        if !ok(&self.prefix) {
            return Err(ClusterError::Name { what: "--cluster-prefix", name: self.prefix.clone() });
        }
        if self.ttl < Duration::from_secs(1) {
            return Err(ClusterError::Ttl(self.ttl));
        }
        Ok(())
    }
}

/// Why a node cannot join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("`--cluster {url}`: not a NATS URL; give `nats://HOST:PORT`")]
    Url { url: String },
    #[error("cannot reach NATS at `{url}`: {reason}; check --cluster (nats://HOST:PORT) and that nats-server runs there")]
    Connect { url: String, reason: String },
    #[error("NATS at `{url}` has no JetStream ({reason}): start nats-server with JetStream enabled (`nats-server -js`)")]
    NoJetStream { url: String, reason: String },
    #[error("cannot open the JetStream key-value bucket `{bucket}` at `{url}`: {reason}")]
    Bucket { url: String, bucket: String, reason: String },
    #[error("`{what} {name}`: use letters, digits, `-` and `_` (at most 64)")]
    Name { what: &'static str, name: String },
    #[error("a lease TTL of {0:?} is too short: give at least 1s")]
    Ttl(Duration),
    #[error("no cluster `{prefix}` at `{url}`: no node has joined it (check --cluster-prefix)")]
    NoCluster { url: String, prefix: String },
}

/// A node, as `vigil cluster status` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub pid: u32,
    /// The pipelines it runs, by its last announcement.
    pub pipelines: Vec<String>,
}

/// The cluster, as `vigil cluster status` shows it: the live nodes and who holds each
/// lease.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeStatus>,
    /// Pipeline → the node holding its lease.
    pub leases: BTreeMap<String, String>,
}

/// Reads the cluster's nodes and leases (`vigil cluster status`); changes nothing.
///
/// # Errors
/// NATS unreachable or without JetStream, or no cluster with this prefix.
pub async fn status(url: &str, prefix: &str) -> Result<ClusterStatus, ClusterError> {
    let js = connect_js(url, &format!("vigil cluster status (pid {})", std::process::id())).await?;
    let open = |name: String| {
        let js = js.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(5), js.get_key_value(name)).await {
                Ok(Ok(kv)) => Ok(kv),
                _ => Err(ClusterError::NoCluster { url: shown(url), prefix: prefix.to_owned() }),
            }
        }
    };
    let (leases, nodes) = (open(format!("{prefix}-leases")).await?, open(format!("{prefix}-nodes")).await?);
    let mut out = ClusterStatus::default();
    for key in keys(&nodes).await {
        if let Ok(Some(v)) = nodes.get(&key).await {
            let a: Announcement = serde_json::from_slice(&v).unwrap_or_default();
            out.nodes.push(NodeStatus { node: key, pid: a.pid, pipelines: a.pipelines });
        }
    }
    for key in keys(&leases).await {
        if let Ok(Some(v)) = leases.get(&key).await {
            out.leases.insert(key, String::from_utf8_lossy(&v).into_owned());
        }
    }
    Ok(out)
}

/// The keys of a bucket (none when it cannot be read).
async fn keys(kv: &kv::Store) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Ok(mut keys)) = tokio::time::timeout(Duration::from_secs(5), kv.keys()).await {
        while let Ok(Some(Ok(key))) = tokio::time::timeout(Duration::from_secs(5), keys.next()).await {
            out.push(key);
        }
    }
    out
}

/// Connects to NATS at `url` and checks that it has JetStream.
async fn connect_js(raw: &str, name: &str) -> Result<jetstream::Context, ClusterError> {
    let url = shown(raw);
    if !(raw.starts_with("nats://") || raw.starts_with("tls://")) {
        return Err(ClusterError::Url { url });
    }
    let connect = async_nats::ConnectOptions::new().name(name).connection_timeout(Duration::from_secs(5)).connect(raw);
    let client = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(ClusterError::Connect { url, reason: e.to_string() }),
        Err(_) => return Err(ClusterError::Connect { url, reason: "no answer within 10 s".into() }),
    };
    // JetStream's account information: a server without JetStream has no responder
    // (asked as a plain request: the client's typed answer expects a newer server's
    // fields than Debian's nats-server 2.9 sends).
    match tokio::time::timeout(Duration::from_secs(5), client.request("$JS.API.INFO", bytes::Bytes::new())).await {
        Ok(Ok(answer)) => {
            let v: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap_or_default();
            if let Some(e) = v.get("error") {
                let reason = e.get("description").and_then(|d| d.as_str()).unwrap_or("an error").to_owned();
                return Err(ClusterError::NoJetStream { url, reason });
            }
        }
        Ok(Err(e)) => return Err(ClusterError::NoJetStream { url, reason: e.to_string() }),
        Err(_) => return Err(ClusterError::NoJetStream { url, reason: "no answer within 5 s".into() }),
    }
    Ok(jetstream::new(client))
}

/// What the cluster needs from the engine: the pipelines to share out, and running
/// exactly the ones this node holds.
pub trait Owner: Send + Sync {
    /// The plan's pipeline names (they change with reloads).
    fn pipelines(&self) -> Vec<String>;
    /// Runs exactly these pipelines, each under its fence.
    fn own(&self, owned: HashMap<String, Arc<Fence>>) -> BoxFuture<'_, Result<(), String>>;
    /// How this node sees the cluster, after each round (for `/api/v1/status`).
    fn report(&self, health: Health);
}

/// How a node sees the cluster after its last round: shown by `/api/v1/status` under
/// `cluster`, so that a node cut off from NATS says so while its API keeps answering.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Health {
    /// This node's name.
    pub node: String,
    /// `ok` when NATS answered the last round, `unreachable` when it did not (the node
    /// cannot renew its leases: it stops its pipelines before they expire and takes them
    /// again once NATS answers).
    pub coordination: &'static str,
    /// Since when (Unix ms) NATS has not answered, while it does not.
    pub unreachable_since: Option<i64>,
    /// The live nodes this node saw (itself included).
    pub nodes: usize,
    /// The pipelines this node holds the lease of.
    pub held: Vec<String>,
}

/// What the cluster needs from the shared store: a new fencing revision for a pipeline
/// whose lease this node has just taken.
pub trait LeaseStore: Send + Sync {
    /// Bumps the pipeline's lease revision for `node` and returns it.
    fn fence<'a>(&'a self, pipeline: &'a str, node: &'a str) -> BoxFuture<'a, Result<i64, StoreError>>;
}

/// A URL with its password hidden, for errors and logs.
pub fn shown(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = scheme_end + 3;
    let authority_end = url[rest..].find(['/', '?', '#']).map_or(url.len(), |i| rest + i);
    match url[rest..authority_end].rfind('@') {
        Some(at) => match url[rest..rest + at].find(':') {
            Some(colon) => format!("{}***{}", &url[..rest + colon + 1], &url[rest + at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A node's connection to the cluster.
pub struct Cluster {
    opts: Options,
    leases: kv::Store,
    nodes: kv::Store,
}

/// What a node announces in `PREFIX-nodes`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Announcement {
    pid: u32,
    held: usize,
    pipelines: Vec<String>,
}

/// A lease this node holds.
struct Held {
    /// The key's revision last written: the next renewal must find it unchanged.
    revision: u64,
    fence: Arc<Fence>,
    /// When the last successful renewal (or the acquisition) was sent.
    renewed: Instant,
}

impl Cluster {
    /// Connects to NATS, checks that it has JetStream, and opens (or creates) the
    /// buckets. Nothing is taken yet.
    ///
    /// # Errors
    /// A malformed URL, a server that does not answer, a server without JetStream, a
    /// bucket that cannot be opened: one line each, naming the URL (password hidden).
    pub async fn connect(opts: Options) -> Result<Cluster, ClusterError> {
        opts.validate()?;
        let url = shown(&opts.url);
        let js = connect_js(&opts.url, &format!("vigil {} (pid {})", opts.node, std::process::id())).await?;
        let leases = bucket(&js, &url, &format!("{}-leases", opts.prefix), opts.ttl).await?;
        let nodes = bucket(&js, &url, &format!("{}-nodes", opts.prefix), opts.ttl).await?;
        Ok(Cluster { opts, leases, nodes })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.opts.node
    }

    /// Takes, renews and hands over leases every [`Options::renew`] until `cancel`, and
    /// has `owner` run the pipelines held. On cancellation, releases every lease held
    /// (call it once the engine has stopped).
    pub async fn run(self, owner: Arc<dyn Owner>, store: Arc<dyn LeaseStore>, cancel: CancellationToken) {
        let renew = self.opts.renew();
        let mut held: BTreeMap<String, Held> = BTreeMap::new();
        // Free pipelines seen in the previous round: taken whatever the fair share says,
        // so that none stays orphaned while the node count catches up with a death.
        let mut free_before: BTreeSet<String> = BTreeSet::new();
        let mut unreachable_since: Option<i64> = None;
        let mut interval = tokio::time::interval(renew);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(node = %self.opts.node, ttl_ms = self.opts.ttl.as_millis() as u64, renew_ms = renew.as_millis() as u64, "joined the cluster");
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            let (changed, reachable, nodes) = self.round(&owner, &store, &mut held, &mut free_before).await;
            unreachable_since = if reachable { None } else { unreachable_since.or_else(|| Some(crate::time::now_ms())) };
            owner.report(Health {
                node: self.opts.node.clone(),
                coordination: if reachable { "ok" } else { "unreachable" },
                unreachable_since,
                nodes,
                held: held.keys().cloned().collect(),
            });
            if changed {
                let owned: HashMap<String, Arc<Fence>> = held.iter().map(|(k, h)| (k.clone(), h.fence.clone())).collect();
                if let Err(e) = owner.own(owned).await {
                    tracing::error!(error = %e, "cannot run the pipelines this node holds");
                }
                tracing::info!(node = %self.opts.node, pipelines = ?held.keys().collect::<Vec<_>>(), "pipelines held");
            }
        }
        // The engine has stopped: hand everything over at once.
        for name in held.keys() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.leases.delete(name)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.nodes.delete(&self.opts.node)).await;
        tracing::info!(node = %self.opts.node, released = held.len(), "left the cluster");
    }

    /// One round: announce, renew, drop what is lost, hand over a surplus, take free
    /// pipelines up to the fair share. Returns whether the pipelines held changed, and
    /// what the round saw: whether NATS answered, how many nodes are live.
    async fn round(
        &self,
        owner: &Arc<dyn Owner>,
        store: &Arc<dyn LeaseStore>,
        held: &mut BTreeMap<String, Held>,
        free_before: &mut BTreeSet<String>,
    ) -> (bool, bool, usize) {
        let op = self.opts.renew() / 2;
        let mut changed = false;
        let mut lost = Vec::new();
        // Renew every lease at once, each under compare-and-set on its last revision.
        let value = self.lease_value();
        let renewals = held.iter().map(|(name, h)| {
            let (name, value, revision) = (name.clone(), value.clone(), h.revision);
            async move {
                let sent = Instant::now();
                (name.clone(), sent, tokio::time::timeout(op, self.leases.update(&name, value, revision)).await)
            }
        });
        for (name, sent, result) in futures_util::future::join_all(renewals).await {
            let Some(h) = held.get_mut(&name) else { continue };
            match result {
                Ok(Ok(rev)) => {
                    h.revision = rev;
                    h.renewed = sent;
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(pipeline = %name, node = %self.opts.node, "lease lost: another node took it (this node was paused or cut off past the TTL); stopping the pipeline here");
                    lost.push(name);
                    continue;
                }
                Ok(Err(e)) => tracing::warn!(pipeline = %name, error = %e, "cannot renew the lease; trying again"),
                Err(_) => tracing::warn!(pipeline = %name, "cannot renew the lease: NATS did not answer in time; trying again"),
            }
            if h.fence.refused() {
                tracing::warn!(pipeline = %name, "the store refused this node's writes: the lease is another node's; stopping the pipeline here");
                lost.push(name);
            } else if h.renewed.elapsed() >= self.opts.give_up() {
                tracing::error!(pipeline = %name, since_ms = h.renewed.elapsed().as_millis() as u64, "cannot renew the lease before it expires: stopping the pipeline here (another node takes it over)");
                lost.push(name);
            }
        }
        for name in lost {
            held.remove(&name);
            changed = true;
        }

        // Who is there, and how many pipelines each holds (this node: as of now). Whether
        // NATS took the announcement is how this round sees the coordination's health.
        let announced = matches!(tokio::time::timeout(op, self.nodes.put(&self.opts.node, self.announcement(held))).await, Ok(Ok(_)));
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        if let Ok(Ok(mut keys)) = tokio::time::timeout(op, self.nodes.keys()).await {
            while let Ok(Some(Ok(key))) = tokio::time::timeout(op, keys.next()).await {
                let a: Announcement = match tokio::time::timeout(op, self.nodes.get(&key)).await {
                    Ok(Ok(Some(v))) => serde_json::from_slice(&v).unwrap_or_default(),
                    _ => continue,
                };
                counts.insert(key, a.held);
            }
        }
        counts.insert(self.opts.node.clone(), held.len());
        let planned = owner.pipelines();
        let nodes = counts.len().max(1);
        let (lo, hi) = (planned.len() / nodes, planned.len().div_ceil(nodes));

        // Pipelines gone from the plan, then a surplus: stopped here, then released.
        let mut release: Vec<String> = held.keys().filter(|k| !planned.contains(k)).cloned().collect();
        let keep = held.len() - release.len();
        let starving = counts.iter().any(|(n, &c)| n != &self.opts.node && c < lo);
        let surplus = if keep > hi {
            keep - hi
        } else if keep > lo && starving {
            1
        } else {
            0
        };
        release.extend(held.keys().filter(|k| planned.contains(k)).rev().take(surplus).cloned());
        if !release.is_empty() {
            for name in &release {
                held.remove(name);
            }
            let owned: HashMap<String, Arc<Fence>> = held.iter().map(|(k, h)| (k.clone(), h.fence.clone())).collect();
            if let Err(e) = owner.own(owned).await {
                tracing::error!(error = %e, "cannot run the pipelines this node holds");
            }
            for name in &release {
                let _ = tokio::time::timeout(op, self.leases.delete(name)).await;
                tracing::info!(pipeline = %name, node = %self.opts.node, nodes, "lease handed over (fair share)");
            }
            tracing::info!(node = %self.opts.node, pipelines = ?held.keys().collect::<Vec<_>>(), "pipelines held");
            // The engine runs what is held now: only what is taken below changes it again.
            changed = false;
        }

        // Free pipelines: taken up to the fair share (any that was free last round too).
        let mut taken: BTreeSet<String> = BTreeSet::new();
        match tokio::time::timeout(op, self.leases.keys()).await {
            Ok(Ok(mut keys)) => {
                while let Ok(Some(Ok(key))) = tokio::time::timeout(op, keys.next()).await {
                    taken.insert(key);
                }
            }
            _ => return (changed, announced, nodes),
        }
        let free: BTreeSet<String> = planned.iter().filter(|p| !taken.contains(*p) && !held.contains_key(*p)).cloned().collect();
        // Start from a different point on each node, so that nodes do not all race for
        // the same keys.
        let start = self.opts.node.bytes().map(usize::from).sum::<usize>() % free.len().max(1);
        let order: Vec<&String> = free.iter().skip(start).chain(free.iter().take(start)).collect();
        for name in order {
            if held.len() >= hi && !free_before.contains(name) {
                continue;
            }
            if release.contains(name) {
                continue;
            }
            let sent = Instant::now();
            match tokio::time::timeout(op, self.leases.create(name, self.lease_value())).await {
                Ok(Ok(revision)) => match store.fence(name, &self.opts.node).await {
                    Ok(fence) => {
                        tracing::info!(pipeline = %name, node = %self.opts.node, fence, "lease taken");
                        held.insert(name.clone(), Held { revision, fence: Arc::new(Fence::new(name, fence)), renewed: sent });
                        changed = true;
                    }
                    Err(e) => {
                        tracing::error!(pipeline = %name, error = %e, "cannot take the pipeline's fencing revision; releasing its lease");
                        let _ = tokio::time::timeout(op, self.leases.delete(name)).await;
                    }
                },
                Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Ok(Err(e)) => tracing::warn!(pipeline = %name, error = %e, "cannot take the lease"),
                Err(_) => tracing::warn!(pipeline = %name, "cannot take the lease: NATS did not answer in time"),
            }
        }
        // What this node just handed over is for the others: not taken back as orphaned.
        *free_before = free.into_iter().filter(|p| !held.contains_key(p) && !release.contains(p)).collect();
        (changed, announced, nodes)
    }

    fn lease_value(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.opts.node.clone().into_bytes())
    }

    fn announcement(&self, held: &BTreeMap<String, Held>) -> bytes::Bytes {
        let a = Announcement { pid: std::process::id(), held: held.len(), pipelines: held.keys().cloned().collect() };
        bytes::Bytes::from(serde_json::to_vec(&a).unwrap_or_default())
    }
}

/// Opens the bucket `name`, creating it (one value per key, entries expiring after `ttl`)
/// when missing.
async fn bucket(js: &jetstream::Context, url: &str, name: &str, ttl: Duration) -> Result<kv::Store, ClusterError> {
    let err = |reason: String| ClusterError::Bucket { url: url.to_owned(), bucket: name.to_owned(), reason };
    if let Ok(Ok(kv)) = tokio::time::timeout(Duration::from_secs(5), js.get_key_value(name)).await {
        return Ok(kv);
    }
    // The bucket's stream as the client's `create_key_value` makes it (which first reads
    // account fields that Debian's nats-server 2.9 does not send, and so fails there).
    use jetstream::stream;
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    let created = match tokio::time::timeout(Duration::from_secs(5), js.create_stream(config)).await {
        Ok(Ok(_)) => None,
        // Another node created it meanwhile (then the bucket opens below).
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => return Err(err("no answer within 5 s".into())),
    };
    match tokio::time::timeout(Duration::from_secs(5), js.get_key_value(name)).await {
        Ok(Ok(kv)) => Ok(kv),
        Ok(Err(e)) => Err(err(created.unwrap_or_else(|| e.to_string()))),
        Err(_) => Err(err("no answer within 5 s".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_timing() {
        let o = Options { url: "nats://127.0.0.1:4222".into(), node: "a-1".into(), prefix: "vigil".into(), ttl: DEFAULT_TTL };
        assert!(o.validate().is_ok());
        assert_eq!(o.renew(), Duration::from_secs(2));
        assert_eq!(o.give_up(), Duration::from_secs(4));
        assert!(Options { node: "a.b".into(), ..o.clone() }.validate().is_err());
        assert!(Options { prefix: String::new(), ..o.clone() }.validate().is_err());
        assert!(Options { ttl: Duration::from_millis(500), ..o }.validate().is_err());
        assert_eq!(shown("nats://u:secret@h:4222"), "nats://u:***@h:4222");
        assert_eq!(shown("nats://h:4222"), "nats://h:4222");
    }
}
