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
//!   the spread ends within one pipeline of even. Each announcement carries the node's
//!   source version, vigil version and whether it drains; draining nodes (a key `NODE`
//!   in `PREFIX-drain`, or a node stopping) take nothing, hand over what they hold and
//!   are out of everyone's fair share.
//!
//! Cancellation: [`Cluster::run`] drains when its `leave` token is cancelled (SIGTERM):
//! it hands every pipeline over and waits, at most two TTLs, until other nodes hold them,
//! then returns, so that other nodes take over at once instead of after the TTL.

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

/// How long nodes may run different source versions before a warning: a rolling update
/// of nodes that each pull their own checkout and reload normally ends within seconds to
/// a minute, so a shorter limit warns on every deploy, and a longer one leaves a cluster
/// half-updated (a pipeline moving between nodes changes behaviour) unnoticed.
pub const DEFAULT_SKEW_WARN: Duration = Duration::from_secs(60);

/// This build of vigil, as nodes announce it.
pub const VIGIL_VERSION: &str = env!("CARGO_PKG_VERSION");

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
    /// How long live nodes may announce different source versions before this node
    /// logs a warning ([`DEFAULT_SKEW_WARN`]).
    pub skew_warn: Duration,
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
    #[error("no node `{node}` in cluster `{prefix}` (live nodes: {live}); `vigil cluster status` lists them")]
    NoNode { node: String, prefix: String, live: String },
    #[error("cannot write to the JetStream key-value bucket `{bucket}`: {reason}")]
    Write { bucket: String, reason: String },
}

impl Health {
    /// The cluster's lines of `/metrics` (`vigil_cluster_*`), from this node's last round
    /// (`cluster` of `/api/v1/status`): how many live nodes, each node's versions, pipelines
    /// and whether it drains, version skew, and whether NATS answered.
    pub fn metrics(&self) -> String {
        let h = self;
        use crate::data::escape_label;
        use std::fmt::Write;
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        gauge(&mut out, "vigil_cluster_nodes", "Live nodes of the cluster, as this node's last round saw them (itself included).");
        let _ = writeln!(out, "vigil_cluster_nodes {}", h.nodes.len());
        gauge(&mut out, "vigil_cluster_node_info", "A live node with the source version and the vigil version it announces.");
        for n in &h.nodes {
            let _ = writeln!(
                out,
                "vigil_cluster_node_info{{node=\"{}\",version=\"{}\",vigil_version=\"{}\"}} 1",
                escape_label(&n.node),
                escape_label(&n.version),
                escape_label(&n.vigil_version)
            );
        }
        gauge(&mut out, "vigil_cluster_node_pipelines", "The pipelines a live node runs (holds the lease of), by its announcement.");
        for n in &h.nodes {
            let _ = writeln!(out, "vigil_cluster_node_pipelines{{node=\"{}\"}} {}", escape_label(&n.node), n.pipelines.len());
        }
        gauge(&mut out, "vigil_cluster_node_draining", "1 while a live node drains (takes no pipeline, hands over what it holds).");
        for n in &h.nodes {
            let _ = writeln!(out, "vigil_cluster_node_draining{{node=\"{}\"}} {}", escape_label(&n.node), u8::from(n.draining));
        }
        gauge(&mut out, "vigil_cluster_version_skew", "1 while the live nodes announce more than one source version.");
        let _ = writeln!(out, "vigil_cluster_version_skew {}", u8::from(h.skew));
        gauge(&mut out, "vigil_cluster_coordination_up", "1 when NATS answered this node's last round, 0 when it did not.");
        let _ = writeln!(out, "vigil_cluster_coordination_up {}", u8::from(h.coordination == "ok"));
        out
    }
}

/// A node, as `vigil cluster status` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub pid: u32,
    /// The source version it runs (its last applied reload's; empty from a node that
    /// does not announce it).
    #[serde(default)]
    pub version: String,
    /// Its vigil build (`CARGO_PKG_VERSION`).
    #[serde(default)]
    pub vigil_version: String,
    /// The pipelines it runs, by its last announcement.
    pub pipelines: Vec<String>,
    /// Whether it is draining (`vigil cluster drain`, or stopping on SIGTERM): it takes
    /// no lease, hands over what it holds, and the others leave it out of the fair share.
    #[serde(default)]
    pub draining: bool,
}

impl NodeStatus {
    fn from_announcement(node: String, a: Announcement) -> NodeStatus {
        NodeStatus { node, pid: a.pid, version: a.version, vigil_version: a.vigil_version, pipelines: a.pipelines, draining: a.draining }
    }
}

/// The source versions the live nodes announce (those that announce one), each with its
/// nodes; more than one is a version skew.
pub fn versions(nodes: &[NodeStatus]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in nodes.iter().filter(|n| !n.version.is_empty()) {
        out.entry(n.version.clone()).or_default().push(n.node.clone());
    }
    out
}

/// `version: node, node; version: node` for logs and messages.
fn describe_versions(v: &BTreeMap<String, Vec<String>>) -> String {
    v.iter().map(|(version, nodes)| format!("{version}: {}", nodes.join(", "))).collect::<Vec<_>>().join("; ")
}

/// The cluster, as `vigil cluster status` shows it: the live nodes and who holds each
/// lease.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeStatus>,
    /// Pipeline → the node holding its lease.
    pub leases: BTreeMap<String, String>,
    /// Whether the live nodes announce more than one source version.
    #[serde(default)]
    pub skew: bool,
}

/// Reads the cluster's nodes and leases (`vigil cluster status`); changes nothing, except
/// that it creates the `PREFIX-drain` bucket of a cluster whose nodes predate draining.
///
/// # Errors
/// NATS unreachable or without JetStream, or no cluster with this prefix.
pub async fn status(url: &str, prefix: &str) -> Result<ClusterStatus, ClusterError> {
    Admin::open(url, prefix, "status").await?.status().await
}

/// The operator's side of a cluster (`vigil cluster status|drain|undrain`): reads the
/// buckets, marks nodes draining.
pub struct Admin {
    prefix: String,
    leases: kv::Store,
    nodes: kv::Store,
    drain: kv::Store,
}

impl Admin {
    /// Opens the buckets of the cluster `prefix` at `url`.
    ///
    /// # Errors
    /// NATS unreachable or without JetStream, or no cluster with this prefix.
    pub async fn open(url: &str, prefix: &str, what: &str) -> Result<Admin, ClusterError> {
        let js = connect_js(url, &format!("vigil cluster {what} (pid {})", std::process::id())).await?;
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
        // Made by the nodes when they join; made here for a cluster of older nodes.
        let drain = bucket(&js, &shown(url), &format!("{prefix}-drain"), Duration::ZERO).await?;
        Ok(Admin { prefix: prefix.to_owned(), leases, nodes, drain })
    }

    /// The live nodes, by their announcements, and who holds each lease.
    ///
    /// # Errors
    /// None yet: a bucket that cannot be read reads as empty.
    pub async fn status(&self) -> Result<ClusterStatus, ClusterError> {
        let mut out = ClusterStatus::default();
        for key in keys(&self.nodes).await {
            if let Ok(Some(v)) = self.nodes.get(&key).await {
                let a: Announcement = serde_json::from_slice(&v).unwrap_or_default();
                out.nodes.push(NodeStatus::from_announcement(key, a));
            }
        }
        out.leases = self.leases().await;
        out.skew = versions(&out.nodes).len() > 1;
        Ok(out)
    }

    /// Pipeline → the node holding its lease.
    pub async fn leases(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for key in keys(&self.leases).await {
            if let Ok(Some(v)) = self.leases.get(&key).await {
                out.insert(key, String::from_utf8_lossy(&v).into_owned());
            }
        }
        out
    }

    /// Whether `node` is a live node of the cluster: an error naming the live ones when not.
    async fn require_live(&self, node: &str) -> Result<(), ClusterError> {
        let st = self.status().await?;
        if st.nodes.iter().any(|n| n.node == node) {
            return Ok(());
        }
        let live = st.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(", ");
        Err(ClusterError::NoNode {
            node: node.to_owned(),
            prefix: self.prefix.clone(),
            live: if live.is_empty() { "none".into() } else { live },
        })
    }

    /// Marks `node` draining (a key `NODE` in `PREFIX-drain`): it takes no lease, hands
    /// over the ones it holds, and stays up idle until [`Admin::undrain`] or a restart.
    ///
    /// # Errors
    /// No live node of that name; NATS refusing the write.
    pub async fn drain(&self, node: &str) -> Result<(), ClusterError> {
        self.require_live(node).await?;
        let at = bytes::Bytes::from(crate::time::now_ms().to_string().into_bytes());
        match tokio::time::timeout(Duration::from_secs(5), self.drain.put(node, at)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ClusterError::Write { bucket: format!("{}-drain", self.prefix), reason: e.to_string() }),
            Err(_) => Err(ClusterError::Write { bucket: format!("{}-drain", self.prefix), reason: "no answer within 5 s".into() }),
        }
    }

    /// Lifts the drain mark of `node`; returns whether there was one.
    ///
    /// # Errors
    /// Neither a live node of that name nor a drain mark for it; NATS refusing the write.
    pub async fn undrain(&self, node: &str) -> Result<bool, ClusterError> {
        let marked = matches!(self.drain.get(node).await, Ok(Some(_)));
        if !marked {
            self.require_live(node).await?;
            return Ok(false);
        }
        match tokio::time::timeout(Duration::from_secs(5), self.drain.delete(node)).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(ClusterError::Write { bucket: format!("{}-drain", self.prefix), reason: e.to_string() }),
            Err(_) => Err(ClusterError::Write { bucket: format!("{}-drain", self.prefix), reason: "no answer within 5 s".into() }),
        }
    }
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
    /// The source version this node runs (its last applied reload's), announced to the
    /// others.
    fn version(&self) -> String;
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
    /// The live nodes this node saw in its last round's read of `PREFIX-nodes` (itself
    /// included, as of that round).
    pub nodes: Vec<NodeStatus>,
    /// The pipelines this node holds the lease of.
    pub held: Vec<String>,
    /// Whether this node is draining (taking no lease, handing over what it holds).
    pub draining: bool,
    /// Whether the live nodes announce more than one source version.
    pub skew: bool,
    /// Since when (Unix ms) they have, while they do.
    pub skew_since: Option<i64>,
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
    /// Drain marks (`vigil cluster drain`): key `NODE`, kept until `undrain` (no TTL).
    drain: kv::Store,
}

/// What a node announces in `PREFIX-nodes`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Announcement {
    pid: u32,
    held: usize,
    pipelines: Vec<String>,
    #[serde(default)]
    version: String,
    #[serde(default)]
    vigil_version: String,
    #[serde(default)]
    draining: bool,
}

/// What one round saw, besides the leases held.
struct Seen {
    /// Whether NATS took this node's announcement.
    reachable: bool,
    /// The live nodes, this one as it announced itself this round.
    nodes: Vec<NodeStatus>,
}

/// Version skew as the rounds track it: since when, and whether this episode was
/// warned about.
#[derive(Default)]
struct Skew {
    since: Option<(i64, Instant)>,
    warned: bool,
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
        let drain = bucket(&js, &url, &format!("{}-drain", opts.prefix), Duration::ZERO).await?;
        // A restarted node starts undrained: a drain lasts until `undrain` or a restart.
        if matches!(tokio::time::timeout(Duration::from_secs(5), drain.get(&opts.node)).await, Ok(Ok(Some(_)))) {
            let _ = tokio::time::timeout(Duration::from_secs(5), drain.delete(&opts.node)).await;
            tracing::info!(node = %opts.node, "this node was drained before it restarted: it takes pipelines again");
        }
        Ok(Cluster { opts, leases, nodes, drain })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.opts.node
    }

    /// Takes, renews and hands over leases every [`Options::renew`] until `leave`, and
    /// has `owner` run the pipelines held. A node marked in `PREFIX-drain` (`vigil
    /// cluster drain`) takes nothing and hands over what it holds, until the mark is
    /// lifted.
    ///
    /// On `leave` (SIGTERM/SIGINT) the node drains: it announces itself draining, hands
    /// each pipeline over (stopped here, then its lease deleted) and waits until another
    /// live node holds each — at most two TTLs, less if `hurry` is cancelled, not at all
    /// when no other node is there to take them — then leaves the cluster. The engine
    /// runs none of its pipelines by then.
    pub async fn run(self, owner: Arc<dyn Owner>, store: Arc<dyn LeaseStore>, leave: CancellationToken, hurry: CancellationToken) {
        let renew = self.opts.renew();
        let mut state = RoundState::default();
        let mut interval = tokio::time::interval(renew);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(node = %self.opts.node, ttl_ms = self.opts.ttl.as_millis() as u64, renew_ms = renew.as_millis() as u64, version = %owner.version(), "joined the cluster");
        loop {
            tokio::select! {
                () = leave.cancelled() => break,
                _ = interval.tick() => {}
            }
            let marked = self.drain_marked(state.marked).await;
            if marked != state.marked {
                if marked {
                    tracing::warn!(node = %self.opts.node, held = state.held.len(), "drained (`vigil cluster drain`): handing every pipeline over and taking none until `vigil cluster undrain` or a restart");
                } else {
                    tracing::info!(node = %self.opts.node, "undrained: taking pipelines again");
                }
                state.marked = marked;
            }
            self.step(&owner, &store, &mut state, marked).await;
        }

        // Leaving: drain, then go.
        let started = Instant::now();
        tracing::info!(node = %self.opts.node, held = state.held.len(), "stopping: handing the pipelines over to the other nodes");
        let (released, seen) = self.step(&owner, &store, &mut state, true).await;
        let others: Vec<&str> = seen.nodes.iter().filter(|n| n.node != self.opts.node && !n.draining).map(|n| n.node.as_str()).collect();
        if released.is_empty() {
            tracing::info!(node = %self.opts.node, "nothing to hand over");
        } else if others.is_empty() {
            tracing::warn!(node = %self.opts.node, pipelines = ?released, "no other live node to take the pipelines: stopping without a handover");
        } else {
            let deadline = started + self.opts.ttl * 2;
            let op = self.opts.renew() / 2;
            loop {
                let mut pending = Vec::new();
                let mut taken = Vec::new();
                for name in &released {
                    match tokio::time::timeout(op, self.leases.get(name)).await {
                        Ok(Ok(Some(v))) if v.as_ref() != self.opts.node.as_bytes() => {
                            taken.push(format!("{name}→{}", String::from_utf8_lossy(&v)))
                        }
                        _ => pending.push(name.clone()),
                    }
                }
                if pending.is_empty() {
                    tracing::info!(node = %self.opts.node, took_ms = started.elapsed().as_millis() as u64, handed_over = ?taken, "every pipeline handed over");
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(node = %self.opts.node, pending = ?pending, waited_ms = started.elapsed().as_millis() as u64, "pipelines not taken by another node within two TTLs: stopping anyway (they are free: a node takes them at its next round)");
                    break;
                }
                tokio::select! {
                    () = hurry.cancelled() => {
                        tracing::warn!(node = %self.opts.node, pending = ?pending, "asked again to stop: not waiting for the handover");
                        break;
                    }
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
        // Anything still held (a handover NATS did not take): released at once.
        for name in state.held.keys() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.leases.delete(name)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.nodes.delete(&self.opts.node)).await;
        tracing::info!(node = %self.opts.node, released = released.len() + state.held.len(), "left the cluster");
    }

    /// Whether this node's drain mark is set (`marked` when NATS does not answer).
    async fn drain_marked(&self, marked: bool) -> bool {
        match tokio::time::timeout(self.opts.renew() / 2, self.drain.get(&self.opts.node)).await {
            Ok(Ok(v)) => v.is_some(),
            _ => marked,
        }
    }

    /// One round and what follows it: the engine runs what is held, the skew is
    /// tracked, the health reported. Returns what the round handed over and saw.
    async fn step(
        &self,
        owner: &Arc<dyn Owner>,
        store: &Arc<dyn LeaseStore>,
        state: &mut RoundState,
        draining: bool,
    ) -> (Vec<String>, Seen) {
        let (changed, released, seen) = self.round(owner, store, &mut state.held, &mut state.free_before, draining).await;
        state.unreachable_since = if seen.reachable { None } else { state.unreachable_since.or_else(|| Some(crate::time::now_ms())) };
        if seen.reachable {
            self.track_skew(&mut state.skew, &seen.nodes);
        }
        owner.report(Health {
            node: self.opts.node.clone(),
            coordination: if seen.reachable { "ok" } else { "unreachable" },
            unreachable_since: state.unreachable_since,
            nodes: seen.nodes.clone(),
            held: state.held.keys().cloned().collect(),
            draining,
            skew: state.skew.since.is_some(),
            skew_since: state.skew.since.map(|(ms, _)| ms),
        });
        if changed {
            let owned: HashMap<String, Arc<Fence>> = state.held.iter().map(|(k, h)| (k.clone(), h.fence.clone())).collect();
            if let Err(e) = owner.own(owned).await {
                tracing::error!(error = %e, "cannot run the pipelines this node holds");
            }
            tracing::info!(node = %self.opts.node, pipelines = ?state.held.keys().collect::<Vec<_>>(), "pipelines held");
        }
        (released, seen)
    }

    /// Notes whether the live nodes announce different source versions: a warning once
    /// per episode when it lasts [`Options::skew_warn`], a line when they agree again.
    fn track_skew(&self, skew: &mut Skew, nodes: &[NodeStatus]) {
        let v = versions(nodes);
        if v.len() > 1 {
            let (_, since) = *skew.since.get_or_insert_with(|| (crate::time::now_ms(), Instant::now()));
            if !skew.warned && since.elapsed() >= self.opts.skew_warn {
                tracing::warn!(
                    node = %self.opts.node,
                    versions = %describe_versions(&v),
                    for_s = since.elapsed().as_secs(),
                    "version skew: the nodes run different source versions (a pipeline runs the version of the node that holds it, so one moving between nodes changes behaviour); bring their checkouts to the same commit and reload"
                );
                skew.warned = true;
            }
        } else if skew.since.is_some() {
            if skew.warned {
                tracing::info!(node = %self.opts.node, versions = %describe_versions(&v), "version skew over: the nodes run the same source version again");
            }
            *skew = Skew::default();
        }
    }

    /// One round: announce, renew, drop what is lost, hand over a surplus (everything,
    /// when `draining`), take free pipelines up to the fair share (none when draining).
    /// Returns whether the pipelines held changed (beyond what was handed over, which
    /// the engine already stopped), what was handed over, and what the round saw.
    async fn round(
        &self,
        owner: &Arc<dyn Owner>,
        store: &Arc<dyn LeaseStore>,
        held: &mut BTreeMap<String, Held>,
        free_before: &mut BTreeSet<String>,
        draining: bool,
    ) -> (bool, Vec<String>, Seen) {
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

        // Who is there, what each runs and how many pipelines each holds (this node: as
        // of now). Whether NATS took the announcement is how this round sees the
        // coordination's health. Draining nodes are out of the fair share.
        let version = owner.version();
        let announced = matches!(
            tokio::time::timeout(op, self.nodes.put(&self.opts.node, self.announcement(held, &version, draining))).await,
            Ok(Ok(_))
        );
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen: BTreeMap<String, NodeStatus> = BTreeMap::new();
        if let Ok(Ok(mut keys)) = tokio::time::timeout(op, self.nodes.keys()).await {
            while let Ok(Some(Ok(key))) = tokio::time::timeout(op, keys.next()).await {
                let a: Announcement = match tokio::time::timeout(op, self.nodes.get(&key)).await {
                    Ok(Ok(Some(v))) => serde_json::from_slice(&v).unwrap_or_default(),
                    _ => continue,
                };
                if !a.draining {
                    counts.insert(key.clone(), a.held);
                }
                seen.insert(key.clone(), NodeStatus::from_announcement(key, a));
            }
        }
        counts.remove(&self.opts.node);
        if !draining {
            counts.insert(self.opts.node.clone(), held.len());
        }
        let planned = owner.pipelines();
        let nodes = counts.len().max(1);
        let (lo, hi) = (planned.len() / nodes, planned.len().div_ceil(nodes));

        // Pipelines gone from the plan, then a surplus (all of them when draining):
        // stopped here, then released, one by one.
        let mut release: Vec<String> = held.keys().filter(|k| draining || !planned.contains(k)).cloned().collect();
        let keep = held.len() - release.len();
        let starving = counts.iter().any(|(n, &c)| n != &self.opts.node && c < lo);
        let surplus = if keep > hi {
            keep - hi
        } else if keep > lo && starving {
            1
        } else {
            0
        };
        let extra: Vec<String> = held.keys().filter(|k| !release.contains(k)).rev().take(surplus).cloned().collect();
        release.extend(extra);
        for name in &release {
            held.remove(name);
            let owned: HashMap<String, Arc<Fence>> = held.iter().map(|(k, h)| (k.clone(), h.fence.clone())).collect();
            if let Err(e) = owner.own(owned).await {
                tracing::error!(error = %e, "cannot run the pipelines this node holds");
            }
            let _ = tokio::time::timeout(op, self.leases.delete(name)).await;
            let why = if draining {
                "draining"
            } else if planned.contains(name) {
                "fair share"
            } else {
                "gone from the plan"
            };
            tracing::info!(pipeline = %name, node = %self.opts.node, nodes, "lease handed over ({why})");
        }
        if !release.is_empty() {
            tracing::info!(node = %self.opts.node, pipelines = ?held.keys().collect::<Vec<_>>(), "pipelines held");
            // The engine runs what is held now: only what is taken below changes it again.
            changed = false;
        }
        let me = NodeStatus {
            node: self.opts.node.clone(),
            pid: std::process::id(),
            version,
            vigil_version: VIGIL_VERSION.to_owned(),
            pipelines: held.keys().cloned().collect(),
            draining,
        };
        seen.insert(me.node.clone(), me);
        let mut saw = Seen { reachable: announced, nodes: seen.into_values().collect() };

        // Free pipelines: taken up to the fair share (any that was free last round too).
        let mut taken: BTreeSet<String> = BTreeSet::new();
        match tokio::time::timeout(op, self.leases.keys()).await {
            Ok(Ok(mut keys)) => {
                while let Ok(Some(Ok(key))) = tokio::time::timeout(op, keys.next()).await {
                    taken.insert(key);
                }
            }
            _ => return (changed, release, saw),
        }
        if draining {
            free_before.clear();
            return (changed, release, saw);
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
        if changed {
            if let Some(me) = saw.nodes.iter_mut().find(|n| n.node == self.opts.node) {
                me.pipelines = held.keys().cloned().collect();
            }
        }
        // What this node just handed over is for the others: not taken back as orphaned.
        *free_before = free.into_iter().filter(|p| !held.contains_key(p) && !release.contains(p)).collect();
        (changed, release, saw)
    }

    fn lease_value(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.opts.node.clone().into_bytes())
    }

    fn announcement(&self, held: &BTreeMap<String, Held>, version: &str, draining: bool) -> bytes::Bytes {
        let a = Announcement {
            pid: std::process::id(),
            held: held.len(),
            pipelines: held.keys().cloned().collect(),
            version: version.to_owned(),
            vigil_version: VIGIL_VERSION.to_owned(),
            draining,
        };
        bytes::Bytes::from(serde_json::to_vec(&a).unwrap_or_default())
    }
}

/// What [`Cluster::run`] keeps between rounds.
#[derive(Default)]
struct RoundState {
    held: BTreeMap<String, Held>,
    /// Free pipelines seen in the previous round: taken whatever the fair share says,
    /// so that none stays orphaned while the node count catches up with a death.
    free_before: BTreeSet<String>,
    unreachable_since: Option<i64>,
    skew: Skew,
    /// Whether this node's drain mark was set at the last look.
    marked: bool,
}

/// Opens the bucket `name`, creating it (one value per key, entries expiring after `ttl`;
/// never when it is zero) when missing.
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
        let o = Options {
            url: "nats://127.0.0.1:4222".into(),
            node: "a-1".into(),
            prefix: "vigil".into(),
            ttl: DEFAULT_TTL,
            skew_warn: DEFAULT_SKEW_WARN,
        };
        assert!(o.validate().is_ok());
        assert_eq!(o.renew(), Duration::from_secs(2));
        assert_eq!(o.give_up(), Duration::from_secs(4));
        assert!(Options { node: "a.b".into(), ..o.clone() }.validate().is_err());
        assert!(Options { prefix: String::new(), ..o.clone() }.validate().is_err());
        assert!(Options { ttl: Duration::from_millis(500), ..o }.validate().is_err());
        assert_eq!(shown("nats://u:secret@h:4222"), "nats://u:***@h:4222");
        assert_eq!(shown("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn versions_group_nodes_and_ignore_unannounced() {
        let n = |node: &str, version: &str| NodeStatus {
            node: node.into(),
            pid: 1,
            version: version.into(),
            vigil_version: VIGIL_VERSION.into(),
            pipelines: Vec::new(),
            draining: false,
        };
        let v = versions(&[n("a", "v1"), n("b", "v2"), n("c", "v1"), n("old", "")]);
        assert_eq!(v.len(), 2);
        assert_eq!(describe_versions(&v), "v1: a, c; v2: b");
        assert_eq!(versions(&[n("a", "v1"), n("old", "")]).len(), 1);
    }
}
