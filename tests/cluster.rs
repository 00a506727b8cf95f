//! Several nodes (issue #19): real `vigil run --cluster` processes on a real PostgreSQL
//! (`VIGIL_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`; each test its own
//! database `vigil_test_…`) and a real NATS server with JetStream (`VIGIL_TEST_NATS`,
//! default `nats://127.0.0.1:4222`; each test its own bucket prefix), notifications
//! counted at a real HTTP receiver.
//!
//! - three nodes share the pipelines evenly; `kill -9` of an owner: another node runs its
//!   pipelines (the takeover time is printed: BENCHMARKS.md), nothing lost or sent twice;
//! - `SIGSTOP` of an owner past its lease, then `SIGCONT`: its writes are refused
//!   (fencing), it stops the pipeline, nothing is sent twice;
//! - the fencing and outbox claims of the store, deterministically;
//! - bad input: a wrong NATS URL, NATS without JetStream, `--cluster` without PostgreSQL;
//! - operations: versions and skew in status, metrics and logs; `vigil cluster drain` and
//!   `undrain`; SIGTERM hands the pipelines over before the node stops.
//!
//! A missing server is a failure, never a skip: `./test.sh` installs and starts both.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};

use common::*;
use vigil::persist::{fenced, Fence};
use vigil::respond::{Incident, Notification};
use vigil::store::prelude::*;
use vigil::store::{PostgresStore, StoreError};

// ---------------------------------------------------------------- servers

fn pg_url() -> String {
    std::env::var("VIGIL_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn nats_url() -> String {
    let url = std::env::var("VIGIL_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let hostport = url.trim_start_matches("nats://").to_owned();
    assert!(
        std::net::TcpStream::connect(&hostport).is_ok(),
        "NATS is not reachable at {url}. The cluster tests need a NATS server with JetStream: run them with ./test.sh, \
         which installs and starts one, or start one (`nats-server -js -a 127.0.0.1 -p 4222`), or point VIGIL_TEST_NATS at one."
    );
    url
}

fn with_database(url: &str, db: &str) -> String {
    let rest = url.find("://").map_or(0, |i| i + 3);
    let path = url[rest..].find('/').map_or(url.len(), |i| rest + i);
    let query = url[path..].find('?').map_or("", |i| &url[path + i..]);
    format!("{}/{db}{query}", &url[..path])
}

fn unique(what: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{what}_{}_{n}_{nanos}", std::process::id())
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A fresh database, dropped with this.
struct Database {
    name: String,
    url: String,
    /// The server's URL (its default database).
    server: String,
}

impl Database {
    fn new() -> Database {
        Database::on(&pg_url())
    }

    /// A fresh database on the server at `server`.
    fn on(server: &str) -> Database {
        let name = unique("vigil_test_cluster");
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(server).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {} ({e}): run the tests with ./test.sh, which installs and starts it, \
                     or point VIGIL_TEST_PG at one whose role may CREATE DATABASE.",
                    vigil::store::redact(server)
                )
            });
            conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
            let _ = conn.close().await;
        });
        let url = with_database(server, &name);
        Database { name, url, server: server.to_owned() }
    }

    fn scalar(&self, sql: &str) -> i64 {
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            let v: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
            let _ = conn.close().await;
            v
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (name, server) = (self.name.clone(), self.server.clone());
        let _ = std::thread::spawn(move || {
            block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                    let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                }
            })
        })
        .join();
    }
}

/// Deletes the JetStream buckets of `prefix` (the tests share one NATS server: nothing of
/// theirs stays behind).
fn drop_buckets(nats: &str, prefix: &str) {
    let (nats, prefix) = (nats.to_owned(), prefix.to_owned());
    let _ = std::thread::spawn(move || {
        block_on(async {
            if let Ok(client) = async_nats::connect(nats.as_str()).await {
                let js = async_nats::jetstream::new(client);
                for bucket in ["leases", "nodes", "drain"] {
                    let _ = js.delete_stream(format!("KV_{prefix}-{bucket}")).await;
                }
                // Training as jobs: the work queue and the object store.
                let _ = js.delete_stream(format!("{prefix}-train")).await;
                let _ = js.delete_stream(format!("OBJ_{prefix}-models")).await;
            }
        })
    })
    .join();
}

/// One webhook delivery.
#[derive(Clone, Debug)]
struct Delivery {
    path: String,
    key: String,
    body: serde_json::Value,
}

/// An HTTP receiver answering 200 to every POST, recording each.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    while let Some(req) = read_request(&mut r) {
                        let key = req.header("x-vigil-delivery").unwrap_or_default().to_owned();
                        let (path, body) = (req.path, serde_json::from_slice(&req.body).unwrap_or_default());
                        g.lock().unwrap().push(Delivery { path, key, body });
                        let mut s = &stream;
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    }
                });
            }
        });
        Receiver { port, got }
    }

    fn all(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- a cluster under test

/// The pipelines `p01…pNN`, each reading `DATA/pNN.csv`, judging `value > 90` and posting
/// to the receiver's `/pNN`.
struct Setup {
    db: Database,
    rx: Receiver,
    data: TempDir,
    nats: String,
    prefix: String,
    ttl: String,
    names: Vec<String>,
    source: String,
    /// Each file's next data time.
    clock: Mutex<BTreeMap<String, i64>>,
}

impl Setup {
    fn new(pipelines: usize, ttl: &str) -> Setup {
        Setup::on(nats_url(), pipelines, ttl)
    }

    /// The same, on the NATS server at `nats`.
    fn on(nats: String, pipelines: usize, ttl: &str) -> Setup {
        Setup::with(nats, Database::new(), pipelines, ttl)
    }

    /// The same, on the NATS server at `nats` and the database `db`.
    fn with(nats: String, db: Database, pipelines: usize, ttl: &str) -> Setup {
        Setup::ticking(nats, db, pipelines, ttl, "200ms")
    }

    /// The same, the pipelines ticking `every` (a duration).
    fn ticking(nats: String, db: Database, pipelines: usize, ttl: &str, every: &str) -> Setup {
        let rx = Receiver::start();
        let data = TempDir::new("cluster-data");
        let names: Vec<String> = (1..=pipelines).map(|i| format!("p{i:02}")).collect();
        let mut source = String::new();
        for n in &names {
            let file = data.join(&format!("{n}.csv"));
            std::fs::write(&file, "timestamp,value\n").unwrap();
            source.push_str(&format!(
                "pipeline {n} {{\n  every {every}\n  collect raw = csv(path: \"{}\")\n  predict hot = threshold(raw, above: 90.0)\n  respond hook = webhook(hot, url: \"http://127.0.0.1:{}/{n}\")\n}}\n\n",
                file.display(),
                rx.port
            ));
        }
        let start = vigil::time::now_ms() - 3_600_000;
        let clock = Mutex::new(names.iter().map(|n| (n.clone(), start)).collect());
        Setup { db, rx, data, nats, prefix: unique("t"), ttl: ttl.to_owned(), names, source, clock }
    }

    fn node(&self, name: &str) -> Node {
        let dir = TempDir::new(&format!("cluster-{name}"));
        std::fs::write(dir.join("p.vigil"), &self.source).unwrap();
        let args = ["--cluster", &self.nats, "--node", name, "--cluster-prefix", &self.prefix, "--lease-ttl", &self.ttl];
        let engine = Engine::start(&dir, "p.vigil", "token", &[("VIGIL_STORE", self.db.url.clone())], &args);
        Node { name: name.to_owned(), engine, dir }
    }

    /// Appends one incident's worth of rows to pipeline `p`'s file: normal, three
    /// above 90, normal again — one `firing` and one `resolved` notification.
    fn episode(&self, p: &str) {
        let mut clock = self.clock.lock().unwrap();
        let t = clock.get_mut(p).unwrap();
        let mut rows = String::new();
        for v in [10, 10, 100, 100, 100, 10, 10, 10, 10, 10] {
            rows.push_str(&format!("{},{v}\n", vigil::time::format_timestamp(*t)));
            *t += 1000;
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(self.data.join(&format!("{p}.csv"))).unwrap();
        f.write_all(rows.as_bytes()).unwrap();
    }

    /// Waits until every pipeline has ticked once (its cursor is in the store): rows
    /// appended from then on are read (a file met for the first time starts at its end).
    fn wait_all_started(&self) {
        let n = self.names.len() as i64;
        wait_for("every pipeline's first tick", Duration::from_secs(90), || {
            (self.db.scalar("SELECT COUNT(*) FROM cursors") >= n).then_some(())
        });
    }

    /// Waits until the receiver has `expected` distinct deliveries and the outbox has
    /// nothing pending; returns the deliveries by idempotency key.
    fn wait_delivered(&self, expected: usize) -> BTreeMap<String, Vec<Delivery>> {
        wait_for(&format!("{expected} notifications delivered"), Duration::from_secs(120), || {
            let by_key = self.by_key();
            let pending = self.db.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'");
            (by_key.len() >= expected && pending == 0).then_some(by_key)
        })
    }

    /// One round of the takeover tests: an incident under way on every pipeline, then
    /// `stop` the owner of pipeline `round % N`, taken out of `nodes`. Returns it, the
    /// pipelines it held, and the time from `stop` until another node ran that pipeline
    /// (printed as `what`).
    fn stop_an_owner(&self, nodes: &mut Vec<Node>, round: usize, what: &str, stop: impl FnOnce(&mut Node)) -> (Node, Vec<String>, f64) {
        for p in &self.names {
            self.episode(p);
        }
        let victim = &self.names[round % self.names.len()];
        let refs: Vec<&Node> = nodes.iter().collect();
        let owner = wait_for("every pipeline owned", Duration::from_secs(30), || ownership(&refs, &self.names));
        let mut stopped = nodes.remove(nodes.iter().position(|n| n.name == owner[victim]).unwrap());
        let held: Vec<String> = owner.iter().filter(|(_, n)| **n == stopped.name).map(|(p, _)| p.clone()).collect();
        let at = Instant::now();
        stop(&mut stopped);
        let refs: Vec<&Node> = nodes.iter().collect();
        let new_owner = wait_for(&format!("another node to run {victim}"), Duration::from_secs(30), || {
            refs.iter().find(|n| n.owned().is_some_and(|o| o.contains(victim))).map(|n| n.name.clone())
        });
        let took = at.elapsed().as_secs_f64();
        eprintln!("{what} {}: {victim} from {} to {new_owner} in {took:.2} s", round + 1, stopped.name);
        (stopped, held, took)
    }

    /// An engine without `--cluster` on the nodes' database is refused at start (the nodes
    /// hold its lock shared).
    fn assert_engine_without_cluster_refused(&self) {
        let other = TempDir::new("cluster-intruder");
        std::fs::write(other.join("p.vigil"), &self.source).unwrap();
        let out = Command::new(vigil_bin())
            .current_dir(other.path())
            .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "127.0.0.1:0", "--store", &self.db.url])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("another vigil is running on the state database"), "{stderr}");
    }

    /// [`Setup::wait_delivered`], then: none arrived twice, and nothing more arrived.
    fn wait_delivered_once(&self, expected: usize) -> BTreeMap<String, Vec<Delivery>> {
        let by_key = self.wait_delivered(expected);
        let doubled: Vec<_> = by_key.iter().filter(|(_, d)| d.len() > 1).map(|(k, d)| (k.clone(), d.len())).collect();
        assert!(doubled.is_empty(), "notifications delivered more than once: {doubled:?}");
        assert_eq!(by_key.len(), expected, "one notification per transition, nothing more: {:?}", by_key.keys().collect::<Vec<_>>());
        by_key
    }

    fn by_key(&self) -> BTreeMap<String, Vec<Delivery>> {
        let mut by_key: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
        for d in self.rx.all() {
            by_key.entry(d.key.clone()).or_default().push(d);
        }
        by_key
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // The nodes (declared after the set-up) are gone by now.
        drop_buckets(&self.nats, &self.prefix);
    }
}

struct Node {
    name: String,
    engine: Engine,
    dir: TempDir,
}

impl Node {
    /// The pipelines this node runs (`/api/v1/status`); None when it does not answer.
    fn owned(&self) -> Option<BTreeSet<String>> {
        self.engine.child.as_ref()?;
        let (code, body) = http_get(self.engine.port, "/api/v1/status")?;
        if code != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(v["pipelines"].as_array()?.iter().filter_map(|p| Some(p["name"].as_str()?.to_owned())).collect())
    }

    fn pid(&self) -> u32 {
        self.engine.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.pid().to_string()]).status().unwrap().success());
    }
}

/// Who runs what, once every pipeline runs on exactly one of `nodes`.
fn ownership(nodes: &[&Node], names: &[String]) -> Option<BTreeMap<String, String>> {
    let mut owner = BTreeMap::new();
    for n in nodes {
        for p in n.owned()? {
            if owner.insert(p, n.name.clone()).is_some() {
                return None;
            }
        }
    }
    (owner.len() == names.len()).then_some(owner)
}

/// Waits until every pipeline runs on one of `nodes`, spread evenly (each node within
/// one of an even share, which for these counts is within ±20%).
fn wait_balanced(nodes: &[&Node], names: &[String]) -> BTreeMap<String, String> {
    let (lo, hi) = (names.len() / nodes.len(), names.len().div_ceil(nodes.len()));
    wait_for("the pipelines spread evenly over the nodes", Duration::from_secs(60), || {
        let owner = ownership(nodes, names)?;
        let counts: Vec<usize> = nodes.iter().map(|n| owner.values().filter(|o| **o == n.name).count()).collect();
        counts.iter().all(|c| (lo..=hi).contains(c)).then_some(owner)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------- the tests

/// Three nodes, nine pipelines: even spread; `kill -9` the owner of a pipeline, again and
/// again, while every pipeline has an incident under way: another node runs it (the
/// takeover time, from the kill to another node running it, is printed for
/// BENCHMARKS.md); every notification arrives, none twice.
#[test]
fn three_nodes_share_pipelines_and_take_over_after_kill_9() {
    let kills: usize = std::env::var("VIGIL_TAKEOVER_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let s = Setup::new(9, "6s");
    let mut nodes = vec![s.node("n1"), s.node("n2"), s.node("n3")];
    let refs: Vec<&Node> = nodes.iter().collect();
    let owner = wait_balanced(&refs, &s.names);
    for n in &nodes {
        let mine = owner.values().filter(|o| **o == n.name).count();
        let mean = s.names.len() as f64 / nodes.len() as f64;
        assert!((mine as f64 - mean).abs() <= 0.2 * mean, "{} runs {mine} of {} pipelines: {owner:?}", n.name, s.names.len());
    }
    s.wait_all_started();
    // `vigil cluster status` sees the same (the announcements follow within a round).
    wait_for("`vigil cluster status` to show the spread", Duration::from_secs(30), || {
        let out = Command::new(vigil_bin())
            .args(["cluster", "status", "--cluster", &s.nats, "--cluster-prefix", &s.prefix, "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let st: vigil::cluster::ClusterStatus = serde_json::from_slice(&out.stdout).unwrap();
        let announced: BTreeMap<String, String> =
            st.nodes.iter().flat_map(|n| n.pipelines.iter().map(|p| (p.clone(), n.node.clone()))).collect();
        (st.nodes.len() == 3 && st.leases == owner && announced == owner).then_some(())
    });
    let text = Command::new(vigil_bin()).args(["cluster", "status", "--cluster", &s.nats, "--cluster-prefix", &s.prefix]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("3 nodes, 9 leases"), "{}", String::from_utf8_lossy(&text.stdout));
    let missing = Command::new(vigil_bin())
        .args(["cluster", "status", "--cluster", &s.nats, "--cluster-prefix", "no_such_cluster"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no cluster `no_such_cluster`"));

    // An engine without --cluster may not run beside the nodes.
    s.assert_engine_without_cluster_refused();

    let mut takeovers = Vec::new();
    let mut episodes = 0;
    for round in 0..kills {
        // An incident under way on every pipeline, then the owner of one of them dies.
        episodes += s.names.len();
        let (dead, _, took) = s.stop_an_owner(&mut nodes, round, "takeover", |n| n.engine.kill9());
        takeovers.push(took);
        let refs: Vec<&Node> = nodes.iter().collect();
        // Every pipeline of the dead node runs elsewhere; a new node joins and gets its share.
        wait_for("the dead node's pipelines to run elsewhere", Duration::from_secs(30), || ownership(&refs, &s.names));
        nodes.push(s.node(&format!("{}-{}", dead.name.split('-').next().unwrap(), round + 1)));
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_balanced(&refs, &s.names);
    }

    // Every incident fired and resolved, each notification delivered exactly once.
    let by_key = s.wait_delivered_once(2 * episodes);
    for p in &s.names {
        let transitions: Vec<String> = by_key
            .values()
            .filter(|d| d[0].path == format!("/{p}"))
            .map(|d| d[0].body["transition"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(transitions.iter().filter(|t| *t == "firing").count(), kills, "{p}: {transitions:?}");
        assert_eq!(transitions.iter().filter(|t| *t == "resolved").count(), kills, "{p}: {transitions:?}");
    }
    // The payload carries the idempotency key too.
    let d = &by_key.values().next().unwrap()[0];
    assert_eq!(d.body["idempotency_key"].as_str(), Some(d.key.as_str()));
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM incidents"), episodes as i64, "one incident per episode");

    let mut sorted = takeovers.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "takeover after kill -9 (lease TTL 6 s, renewal every 2 s), {} kills: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        sorted.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        sorted[sorted.len() - 1]
    );
    assert!(sorted[sorted.len() - 1] < 10.0, "a takeover took over 10 s: {sorted:?}");
}

/// An owner paused past its lease (`SIGSTOP`): the other node takes its pipeline over and
/// runs an incident to the end; the paused node wakes (`SIGCONT`) with a stale tick due:
/// the store refuses its writes, it stops the pipeline, and the receiver got each
/// notification once. Tried over a few pauses until the woken node's tick beat its own
/// lease check to a write (which one runs first after `SIGCONT` is the scheduler's pick);
/// every pause checks that nothing was sent twice.
#[test]
fn a_paused_owner_is_fenced_and_sends_nothing_twice() {
    let s = Setup::new(2, "3s");
    let a = s.node("a");
    let b = s.node("b");
    let mut episodes = 0;
    let mut refused = false;
    for attempt in 1..=5 {
        let owner = wait_balanced(&[&a, &b], &s.names);
        s.wait_all_started();
        let victim = owner.iter().find(|(_, n)| *n == "a").map(|(p, _)| p.clone()).unwrap();
        let revision = s.db.scalar(&format!("SELECT revision FROM pipeline_leases WHERE pipeline = '{victim}'"));
        a.signal("-STOP");
        let _cont = ContinueOnDrop(a.pid());
        wait_for(&format!("b to take {victim} over"), Duration::from_secs(30), || {
            b.owned().is_some_and(|o| o.contains(&victim)).then_some(())
        });
        assert!(s.db.scalar(&format!("SELECT revision FROM pipeline_leases WHERE pipeline = '{victim}'")) > revision);
        // b runs an incident on it to the end while a sleeps.
        s.episode(&victim);
        episodes += 1;
        s.wait_delivered(2 * episodes);
        a.signal("-CONT");
        // a finds out, by the store's refusal or by its lease check, and stops the pipeline.
        wait_for(&format!("a to stop running {victim}"), Duration::from_secs(30), || {
            a.owned().is_some_and(|o| !o.contains(&victim)).then_some(())
        });
        let by_key = s.by_key();
        let doubled: Vec<_> = by_key.iter().filter(|(_, d)| d.len() > 1).map(|(k, _)| k.clone()).collect();
        assert!(doubled.is_empty(), "attempt {attempt}: sent twice: {doubled:?}");
        assert_eq!(by_key.len(), 2 * episodes, "attempt {attempt}: nothing more than b's notifications");
        assert_eq!(s.db.scalar("SELECT COUNT(*) FROM incidents"), episodes as i64, "attempt {attempt}: a opened nothing");
        if a.log().contains(&format!("refused a write for pipeline `{victim}`")) {
            refused = true;
            break;
        }
        eprintln!("attempt {attempt}: a's lease check ran before its stale tick; pausing again");
    }
    assert!(refused, "a woken node's stale write was never refused in five pauses; its log:\n{}", a.log());
}

/// A NATS server of the test's own, with JetStream, its data in `dir`: it can be stopped
/// and started again on the same port with the same data, as an operator restarts one.
fn start_nats(dir: &TempDir, port: Option<u16>) -> Server {
    let bin = require("nats-server", "nats-server");
    let log = dir.join("nats.log");
    let command = |port: u16| {
        let mut c = Command::new(&bin);
        c.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("jetstream"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        c
    };
    let ready = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let (child, port) = match port {
        None => start_on_free_port("nats-server", Some(&log), command, ready),
        Some(port) => {
            let mut child = command(port).spawn().unwrap();
            wait_for_child("nats-server to start again", Duration::from_secs(30), &mut child, Some(&log), || ready(port).then_some(()));
            (child, port)
        }
    };
    // The data outlives the server: `dir` is the caller's.
    Server { child, port, dir: TempDir::new("nats-server") }
}

/// NATS restarted mid-run: while it is down the node cannot renew its leases and stops
/// its pipelines (nothing runs without an owner) but its API keeps answering and reports
/// the degraded state (`cluster.coordination`); once NATS is back, the node takes its
/// pipelines again and incidents run to the end, each notification sent once.
#[test]
fn a_node_survives_a_nats_restart_and_loses_nothing() {
    let nats_dir = TempDir::new("nats-restart");
    let mut nats = start_nats(&nats_dir, None);
    let port = nats.port;
    let s = Setup::on(format!("nats://127.0.0.1:{port}"), 2, "3s");
    let a = s.node("a");
    wait_balanced(&[&a], &s.names);
    s.wait_all_started();
    s.episode("p01");
    s.wait_delivered(2);
    // NATS goes away: the leases cannot be renewed.
    let _ = nats.child.kill();
    let _ = nats.child.wait();
    wait_for("a to stop its pipelines without NATS", Duration::from_secs(30), || a.owned().is_some_and(|o| o.is_empty()).then_some(()));
    // Its API keeps answering, and says why it runs nothing.
    let cluster = || -> serde_json::Value {
        let (_, body) = http_get(a.engine.port, "/api/v1/status").expect("the API answers");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["cluster"].clone()
    };
    let down = wait_for("the status to report NATS unreachable", Duration::from_secs(30), || {
        Some(cluster()).filter(|c| c["coordination"] == "unreachable" && c["held"] == serde_json::json!([]))
    });
    assert!(down["unreachable_since"].as_i64().is_some_and(|t| t <= vigil::time::now_ms()), "{down}");
    assert_eq!(down["node"], "a");
    // NATS is back, with its data: the node takes its pipelines again.
    nats = start_nats(&nats_dir, Some(port));
    wait_balanced(&[&a], &s.names);
    let up = wait_for("the status to report NATS back", Duration::from_secs(30), || {
        Some(cluster()).filter(|c| c["coordination"] == "ok" && c["held"].as_array().is_some_and(|h| h.len() == 2))
    });
    assert!(up["unreachable_since"].is_null(), "{up}");
    s.episode("p01");
    s.episode("p02");
    s.wait_delivered_once(6);
    // Dropped in reverse: the node, the set-up (its buckets, while NATS runs), NATS.
    drop(a);
    drop(s);
    drop(nats);
}

// ================================================================ operations (issue #19):
// versions and skew, the whole cluster in /api/v1/status and /metrics, `vigil cluster
// drain`/`undrain`, SIGTERM drains. (Kept together here; tests added later go at the end.)

impl Setup {
    /// A node running `source` from a checkout of its own, with more `vigil run` arguments.
    fn node_with(&self, name: &str, source: &str, extra: &[&str]) -> Node {
        let dir = TempDir::new(&format!("cluster-{name}"));
        std::fs::write(dir.join("p.vigil"), source).unwrap();
        let mut args = vec!["--cluster", &self.nats, "--node", name, "--cluster-prefix", &self.prefix, "--lease-ttl", &self.ttl];
        args.extend_from_slice(extra);
        let engine = Engine::start(&dir, "p.vigil", "token", &[("VIGIL_STORE", self.db.url.clone())], &args);
        Node { name: name.to_owned(), engine, dir }
    }

    /// `vigil cluster ARGS --cluster NATS --cluster-prefix PREFIX`.
    fn cluster_cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(vigil_bin())
            .arg("cluster")
            .args(args)
            .args(["--cluster", &self.nats, "--cluster-prefix", &self.prefix])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }
}

impl Node {
    /// `/api/v1/status`, parsed; None when the node does not answer.
    fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.engine.port, "/api/v1/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// `/metrics`; empty when the node does not answer.
    fn metrics(&self) -> String {
        http_get(self.engine.port, "/metrics").map(|(_, t)| t).unwrap_or_default()
    }
}

/// `cluster.nodes` of a status: node → (version, vigil_version, pipelines, draining).
fn cluster_nodes(status: &serde_json::Value) -> BTreeMap<String, (String, String, BTreeSet<String>, bool)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    status["cluster"]["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    let pipelines = n["pipelines"].as_array().map(|p| p.iter().map(s).collect()).unwrap_or_default();
                    (s(&n["node"]), (s(&n["version"]), s(&n["vigil_version"]), pipelines, n["draining"] == true))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Three nodes, one running a checkout whose pipeline file differs: every node's status
/// and metrics show the two versions and the skew, `vigil cluster status` too, and the
/// node logs a warning (short `--skew-warn`); once it reloads the same content, the skew
/// clears everywhere and it logs that the versions agree again.
#[test]
fn versions_and_skew_show_in_status_metrics_and_log_and_clear_after_reload() {
    let s = Setup::new(3, "3s");
    let warn = ["--skew-warn", "1s"];
    let other = format!("{}// this checkout has one more line\n", s.source);
    let n1 = s.node_with("n1", &s.source, &warn);
    let n2 = s.node_with("n2", &s.source, &warn);
    let n3 = s.node_with("n3", &other, &warn);
    let owner = wait_balanced(&[&n1, &n2, &n3], &s.names);
    let version = |n: &Node| n.status().unwrap()["version"].as_str().unwrap().to_owned();
    let (v_main, v_other) = (version(&n1), version(&n3));
    assert_ne!(v_main, v_other);
    assert_eq!(version(&n2), v_main);
    let vigil_version = env!("CARGO_PKG_VERSION");

    // Every node sees the whole cluster: who runs which version and which pipelines.
    let expected: BTreeMap<String, (String, String, BTreeSet<String>, bool)> = [("n1", &v_main), ("n2", &v_main), ("n3", &v_other)]
        .into_iter()
        .map(|(n, v)| {
            let mine = owner.iter().filter(|(_, o)| *o == n).map(|(p, _)| p.clone()).collect();
            (n.to_owned(), (v.clone(), vigil_version.to_owned(), mine, false))
        })
        .collect();
    for n in [&n1, &n2, &n3] {
        let st = wait_for(&format!("{} to see the three nodes and the skew", n.name), Duration::from_secs(30), || {
            let st = n.status()?;
            (cluster_nodes(&st) == expected && st["cluster"]["skew"] == true).then_some(st)
        });
        assert!(st["cluster"]["skew_since"].as_i64().is_some_and(|t| t <= vigil::time::now_ms()), "{}", st["cluster"]);
        assert_eq!(st["cluster"]["coordination"], "ok");
        assert_eq!(st["cluster"]["draining"], false);
    }
    let m = n1.metrics();
    for line in [
        "vigil_cluster_nodes 3".to_owned(),
        "vigil_cluster_version_skew 1".to_owned(),
        "vigil_cluster_coordination_up 1".to_owned(),
        format!("vigil_cluster_node_info{{node=\"n1\",version=\"{v_main}\",vigil_version=\"{vigil_version}\"}} 1"),
        format!("vigil_cluster_node_info{{node=\"n3\",version=\"{v_other}\",vigil_version=\"{vigil_version}\"}} 1"),
        "vigil_cluster_node_pipelines{node=\"n2\"} 1".to_owned(),
        "vigil_cluster_node_draining{node=\"n3\"} 0".to_owned(),
        "# TYPE vigil_cluster_version_skew gauge".to_owned(),
    ] {
        assert!(m.lines().any(|l| l == line), "`{line}` not in /metrics:\n{m}");
    }
    // `vigil cluster status`, as JSON and as text.
    let out = s.cluster_cmd(&["status", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st: vigil::cluster::ClusterStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert!(st.skew);
    let versions: BTreeMap<String, String> = st.nodes.iter().map(|n| (n.node.clone(), n.version.clone())).collect();
    assert_eq!(versions, [("n1", &v_main), ("n2", &v_main), ("n3", &v_other)].map(|(n, v)| (n.to_owned(), v.clone())).into());
    assert!(st.nodes.iter().all(|n| n.vigil_version == vigil_version && !n.draining));
    let out = s.cluster_cmd(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("3 nodes, 3 leases, 2 source versions (version skew)"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("n3 ") && l.contains(&format!("version {v_other}"))), "{text}");
    // The warning, naming the nodes and versions, in the odd node's log.
    wait_for("n3 to warn about the skew", Duration::from_secs(30), || {
        let log = n3.log();
        log.lines()
            .any(|l| l.contains("version skew:") && l.contains(&format!("{v_main}: n1, n2")) && l.contains(&format!("{v_other}: n3")))
            .then_some(())
    });
    let log = n3.log();
    assert_eq!(log.matches("version skew:").count(), log.matches("version skew over").count() + 1, "one warning per episode:\n{log}");

    // n3's checkout is brought to the same content and reloaded: the skew clears.
    std::fs::write(n3.dir.join("p.vigil"), &s.source).unwrap();
    n3.signal("-HUP");
    for n in [&n1, &n2, &n3] {
        let st = wait_for(&format!("{} to see the skew clear", n.name), Duration::from_secs(30), || {
            let st = n.status()?;
            let nodes = cluster_nodes(&st);
            (nodes.len() == 3 && nodes.values().all(|(v, ..)| *v == v_main) && st["cluster"]["skew"] == false).then_some(st)
        });
        assert!(st["cluster"]["skew_since"].is_null(), "{}", st["cluster"]);
    }
    wait_for("/metrics to show no skew", Duration::from_secs(30), || {
        n1.metrics().lines().any(|l| l == "vigil_cluster_version_skew 0").then_some(())
    });
    wait_for("n3 to log that the versions agree", Duration::from_secs(30), || n3.log().contains("version skew over").then_some(()));
    let out = s.cluster_cmd(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("3 nodes, 3 leases, 1 source version\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `vigil cluster drain n2`: n2 hands its pipelines over and takes none; the command
/// waits, prints who took what and exits 0; n2 stays up, idle and shown draining, until
/// `vigil cluster undrain n2` gives it its share back. An unknown node or cluster is
/// exit status 2.
#[test]
fn drain_hands_a_nodes_pipelines_over_and_undrain_brings_it_back() {
    let s = Setup::new(6, "3s");
    let (n1, n2, n3) = (s.node("n1"), s.node("n2"), s.node("n3"));
    let all = [&n1, &n2, &n3];
    let owner = wait_balanced(&all, &s.names);
    let held: BTreeSet<String> = owner.iter().filter(|(_, n)| *n == "n2").map(|(p, _)| p.clone()).collect();
    assert_eq!(held.len(), 2);

    // Bad input: one line, exit status 2.
    let out = s.cluster_cmd(&["drain", "nx", "--timeout", "5s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no node `nx`") && stderr.contains("n1, n2, n3"), "{stderr}");
    let out = Command::new(vigil_bin())
        .args(["cluster", "drain", "n2", "--cluster", &s.nats, "--cluster-prefix", "no_such_cluster"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster `no_such_cluster`"));

    let out = s.cluster_cmd(&["drain", "n2", "--timeout", "60s"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("draining n2: 2 pipelines to hand over"), "{stderr}");
    assert!(stdout.starts_with("drained n2 in "), "{stdout}");
    let took: BTreeMap<String, String> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(char::is_whitespace).map(|(p, n)| (p.to_owned(), n.trim().to_owned())))
        .collect();
    assert_eq!(took.keys().cloned().collect::<BTreeSet<_>>(), held, "{stdout}");
    assert!(took.values().all(|n| n == "n1" || n == "n3"), "{stdout}");
    for p in took.keys() {
        assert!(stderr.contains(&format!("  {p} → ")), "a progress line for {p}: {stderr}");
    }
    // n2 stopped them before releasing them; the others run everything.
    assert_eq!(n2.owned(), Some(BTreeSet::new()));
    wait_for("n1 and n3 to run every pipeline", Duration::from_secs(30), || ownership(&[&n1, &n3], &s.names));
    // n2 stays up and idle, shown draining by itself and by the others.
    wait_for("n2 shown draining", Duration::from_secs(30), || {
        let own = n2.status()?;
        let seen = cluster_nodes(&n1.status()?);
        let (_, _, pipelines, draining) = seen.get("n2")?;
        (own["cluster"]["draining"] == true && own["cluster"]["held"] == serde_json::json!([]) && *draining && pipelines.is_empty())
            .then_some(())
    });
    assert!(n2.log().contains("drained (`vigil cluster drain`)"), "{}", n2.log());
    let m = n1.metrics();
    assert!(m.lines().any(|l| l == "vigil_cluster_node_draining{node=\"n2\"} 1"), "{m}");
    let st: vigil::cluster::ClusterStatus = serde_json::from_slice(&s.cluster_cmd(&["status", "--format", "json"]).stdout).unwrap();
    assert!(st.nodes.iter().any(|n| n.node == "n2" && n.draining && n.pipelines.is_empty()), "{st:?}");
    assert!(st.leases.values().all(|n| n != "n2"), "{st:?}");

    // Undrain: n2 gets its share back.
    let out = s.cluster_cmd(&["undrain", "n2"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("undrained n2"), "{out:?}");
    wait_balanced(&all, &s.names);
    assert!(n2.log().contains("undrained: taking pipelines again"));
    let out = s.cluster_cmd(&["undrain", "n2"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("n2 was not drained"), "{out:?}");
    let out = s.cluster_cmd(&["undrain", "nx"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// SIGTERM of a pipeline's owner, again and again, while every pipeline has an incident
/// under way: the node hands its pipelines over and waits until other nodes run them
/// before it exits (status 0); at a real receiver every notification arrives, none twice.
/// The handover time (SIGTERM to another node running the pipeline) is printed for
/// BENCHMARKS.md (`VIGIL_SIGTERM_REPEATS`, default 3).
#[test]
fn sigterm_hands_pipelines_over_before_stopping_and_sends_each_notification_once() {
    let repeats: usize = std::env::var("VIGIL_SIGTERM_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let s = Setup::new(6, "6s");
    let mut nodes = vec![s.node("n1"), s.node("n2"), s.node("n3")];
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_balanced(&refs, &s.names);
    s.wait_all_started();
    let mut handovers = Vec::new();
    let mut episodes = 0;
    for round in 0..repeats {
        episodes += s.names.len();
        let (mut leaving, theirs, took) = s.stop_an_owner(&mut nodes, round, "handover after SIGTERM", |n| n.signal("-TERM"));
        handovers.push(took);
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_for("the leaving node's pipelines to run elsewhere", Duration::from_secs(30), || ownership(&refs, &s.names));
        // It exits by itself, cleanly, once the others hold what it held.
        let mut child = leaving.engine.child.take().unwrap();
        let status = wait_for(&format!("{} to exit", leaving.name), Duration::from_secs(30), || child.try_wait().unwrap());
        let log = leaving.log();
        assert!(status.success(), "{status:?}: {log}");
        assert!(log.contains("every pipeline handed over"), "{} held {theirs:?}; its log:\n{log}", leaving.name);
        nodes.push(s.node(&format!("{}-{}", leaving.name.split('-').next().unwrap(), round + 1)));
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_balanced(&refs, &s.names);
    }

    s.wait_delivered_once(2 * episodes);
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM incidents"), episodes as i64, "one incident per episode");
    let mut sorted = handovers.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "handover after SIGTERM (lease TTL 6 s, renewal every 2 s), {} stops: p50 {:.2} s, max {:.2} s",
        sorted.len(),
        percentile(&sorted, 0.5),
        sorted[sorted.len() - 1]
    );
}

/// The last node: `vigil cluster drain` cannot complete (no other node to take the
/// pipelines) and says so, exit status 1 at its --timeout; after `undrain` it runs them
/// again; SIGTERM then stops it without waiting for a handover no one can take.
#[test]
fn the_last_node_cannot_be_drained_and_stops_at_once_on_sigterm() {
    let s = Setup::new(2, "3s");
    let mut a = s.node("a");
    wait_balanced(&[&a], &s.names);
    let out = s.cluster_cmd(&["drain", "a", "--timeout", "1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no other live node"), "{stderr}");
    assert!(stderr.contains("no other node holds p01 p02"), "{stderr}");
    // It keeps draining: it hands them over and they stay free.
    wait_for("a to run nothing", Duration::from_secs(30), || a.owned().is_some_and(|o| o.is_empty()).then_some(()));
    let out = s.cluster_cmd(&["undrain", "a"]);
    assert!(out.status.success(), "{out:?}");
    wait_balanced(&[&a], &s.names);
    a.signal("-TERM");
    let mut child = a.engine.child.take().unwrap();
    let status = wait_for("a to exit", Duration::from_secs(30), || child.try_wait().unwrap());
    let log = a.log();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("no other live node to take the pipelines: stopping without a handover"), "{log}");
}

/// A second SIGTERM while a node waits for its handover (the only other node is paused
/// and cannot take anything) stops it at once; the pipelines it released are free, and
/// the other node takes them once it runs again.
#[test]
fn a_second_sigterm_stops_a_draining_node_at_once() {
    let s = Setup::new(2, "6s");
    let mut a = s.node("a");
    let b = s.node("b");
    wait_balanced(&[&a, &b], &s.names);
    b.signal("-STOP");
    let _cont = ContinueOnDrop(b.pid());
    a.signal("-TERM");
    wait_for("a to start handing over", Duration::from_secs(30), || a.log().contains("stopping: handing the pipelines over").then_some(()));
    a.signal("-TERM");
    let mut child = a.engine.child.take().unwrap();
    let status = wait_for("a to exit", Duration::from_secs(30), || child.try_wait().unwrap());
    let log = a.log();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("asked again to stop: not waiting for the handover"), "{log}");
    assert!(!log.contains("every pipeline handed over"), "{log}");
    b.signal("-CONT");
    wait_for("b to run both pipelines", Duration::from_secs(30), || ownership(&[&b], &s.names));
}

/// Sends SIGCONT on drop, so that a failing test does not leave a stopped process.
struct ContinueOnDrop(u32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

fn incident(id: &str, pipeline: &str) -> Incident {
    serde_json::from_value(serde_json::json!({
        "id": id, "key": id, "pipeline": pipeline, "stage": format!("{pipeline}.hook"), "series": [id],
        "labels": {}, "status": "firing", "acknowledged": false, "acknowledged_by": null, "acknowledged_at": null,
        "opened_at": 1, "updated_at": 1, "resolved_at": null, "resolved_by": null, "score": 1.0, "value": 100.0,
        "silenced": false, "feedback": null, "feedback_note": null, "notifications": 0, "last_notified_at": null,
    }))
    .unwrap()
}

fn note(i: &Incident) -> Notification {
    Notification {
        dedupe: format!("{}/{}/firing", i.id, i.stage),
        incident_id: i.id.clone(),
        stage: i.stage.clone(),
        channel: "webhook".into(),
        transition: "firing".into(),
        subject: "s".into(),
        body: "b".into(),
        incident: i.clone(),
    }
}

/// The store's side, without timing: a write under an older lease revision is refused
/// (incidents and outbox, cursors, runs) and changes nothing; the new owner's goes
/// through. Two dispatchers never claim the same row; a row whose claim expired is
/// claimed by the other, and the first may then not start sending it.
#[tokio::test]
async fn the_store_fences_stale_owners_and_claims_outbox_rows_once() {
    let db = tokio::task::spawn_blocking(Database::new).await.unwrap();
    let a = PostgresStore::connect(&db.url).await.unwrap().clustered("a", Duration::from_secs(10));
    let b = PostgresStore::connect(&db.url).await.unwrap().clustered("b", Duration::from_secs(10));
    let old = Arc::new(Fence::new("p", a.take_lease("p", "a").await.unwrap()));
    let new = Arc::new(Fence::new("p", b.take_lease("p", "b").await.unwrap()));
    assert_eq!((old.revision, new.revision), (1, 2));

    let i = incident("i1", "p");
    let err = fenced(Some(old.clone()), a.record_respond(std::slice::from_ref(&i), &[note(&i)], &[])).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { held: 1, current: 2, .. }), "{err}");
    assert!(err.to_string().contains("refused a write for pipeline `p`"), "{err}");
    assert!(old.refused());
    let cursors = [("p.raw".to_owned(), "42".to_owned())];
    assert!(matches!(fenced(Some(old.clone()), a.save_cursors(&cursors)).await, Err(StoreError::Fenced { .. })));
    assert!(a.incidents(None, 10).await.unwrap().is_empty(), "nothing of the stale write");
    assert!(a.outbox(10).await.unwrap().is_empty());
    assert_eq!(a.load_cursor("p.raw").await.unwrap(), None);
    // Another pipeline's lease does not fence this one; the new owner writes.
    fenced(Some(new.clone()), b.record_respond(std::slice::from_ref(&i), &[note(&i)], &[])).await.unwrap();
    fenced(Some(new.clone()), b.save_cursors(&cursors)).await.unwrap();
    assert!(!new.refused());
    let j = incident("i2", "p");
    fenced(Some(new.clone()), b.record_respond(std::slice::from_ref(&j), &[note(&j)], &[])).await.unwrap();

    // Claims: a takes both rows; b gets none until a's claim expires.
    let stages = vec!["p.hook".to_owned()];
    let now = vigil::time::now_ms();
    let mine = a.claim_due(now, 10, &stages).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert!(b.claim_due(now, 10, &stages).await.unwrap().is_empty(), "claimed rows are not claimed twice");
    assert!(a.claim_due(now, 10, &["other.hook".to_owned()]).await.unwrap().is_empty(), "only the stages asked for");
    a.mark_started(mine[0].id, now).await.unwrap();
    // While a's claim lasts, the send it started is in flight: nobody recovers it.
    assert!(b.interrupted_notifications(now + 1_000, &stages).await.unwrap().is_empty());
    // 20 s later (past the 10 s claim): b claims the row a had not started, and a may not
    // send it; the row whose send a had started is not claimed as a new send but recovered
    // as after a crash, by one node.
    let later = now + 20_000;
    let ids = |rows: Vec<vigil::respond::OutboxRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(b.claim_due(later, 10, &stages).await.unwrap()), vec![mine[1].id]);
    assert!(matches!(a.mark_started(mine[1].id, later).await, Err(StoreError::ClaimLost { .. })));
    b.mark_started(mine[1].id, later).await.unwrap();
    assert_eq!(ids(b.interrupted_notifications(later, &stages).await.unwrap()), vec![mine[0].id]);
    assert!(a.interrupted_notifications(later, &stages).await.unwrap().is_empty(), "recovered by one node only");
    assert!(b.interrupted_notifications(later, &["other.hook".to_owned()]).await.unwrap().is_empty());
    // A node that stops hands back what it claimed and had not started: another node
    // claims it at once, not when the claim expires.
    let k = incident("i3", "p");
    fenced(Some(new.clone()), b.record_respond(std::slice::from_ref(&k), &[note(&k)], &[])).await.unwrap();
    let claimed = ids(b.claim_due(later, 10, &stages).await.unwrap());
    assert_eq!(claimed.len(), 1);
    assert!(a.claim_due(later, 10, &stages).await.unwrap().is_empty());
    assert_eq!(b.release_claims().await.unwrap(), 1, "only the row whose send had not started");
    assert_eq!(ids(a.claim_due(later, 10, &stages).await.unwrap()), claimed);
    a.close().await;
    b.close().await;
    drop(db);
}

/// What `vigil run --cluster` refuses: one line on stderr, exit status 2, and nothing
/// started (no API address written).
#[test]
fn bad_cluster_input_is_one_line_and_exit_2() {
    let nats = nats_url();
    let db = Database::new();
    let dir = TempDir::new("cluster-bad");
    std::fs::write(dir.join("p.vigil"), "pipeline p {\n  every 1s\n  collect _raw = synthetic(seed: 1)\n}\n").unwrap();
    let run = |store: Option<&str>, cluster: &str| {
        let prefix = unique("bad");
        let addr = dir.join("vigil.addr");
        let mut cmd = Command::new(vigil_bin());
        cmd.current_dir(dir.path())
            .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "127.0.0.1:0", "--addr-file"])
            .arg(&addr)
            .args(["--cluster", cluster, "--cluster-prefix", &prefix])
            .env("NO_COLOR", "1")
            .env_remove("VIGIL_STORE");
        if let Some(s) = store {
            cmd.args(["--store", s]);
        }
        let out = cmd.output().unwrap();
        drop_buckets(&nats, &prefix);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(!addr.exists(), "nothing started");
        stderr
    };
    let e = run(None, &nats);
    assert!(e.contains("`--cluster` needs a PostgreSQL store"), "{e}");
    let e = run(Some("sqlite://state/x.db"), &nats);
    assert!(e.contains("`--cluster` needs a PostgreSQL store"), "{e}");
    let e = run(Some(&db.url), &format!("nats://127.0.0.1:{}", free_port()));
    assert!(e.contains("cannot reach NATS at"), "{e}");
    let e = run(Some(&db.url), "http://127.0.0.1:4222");
    assert!(e.contains("not a NATS URL"), "{e}");
    // A database an engine without --cluster runs on (and the reverse).
    let single = TempDir::new("cluster-single");
    std::fs::write(single.join("p.vigil"), "pipeline p {\n  every 1s\n  collect _raw = synthetic(seed: 1)\n}\n").unwrap();
    let mut one = Engine::start(&single, "p.vigil", "token", &[("VIGIL_STORE", db.url.clone())], &[]);
    let e = run(Some(&db.url), &nats);
    assert!(e.contains("another vigil is running on the state database") && e.contains("without --cluster"), "{e}");
    one.kill9();
    // A NATS server without JetStream.
    let bin = require("nats-server", "nats-server");
    let log = dir.join("nats.log");
    let (child, port) = start_on_free_port(
        "nats-server without JetStream",
        Some(&log),
        |port| {
            let mut c = Command::new(&bin);
            c.args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::process::Stdio::null());
            c
        },
        |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let _server = Server { child, port, dir: TempDir::new("nats-plain") };
    let e = run(Some(&db.url), &format!("nats://127.0.0.1:{port}"));
    assert!(e.contains("has no JetStream") && e.contains("-js"), "{e}");
}

/// A remediation running on a node that dies (`kill -9`): the node that takes the
/// pipeline over finds the row whose run had started once the dead node's claim expires,
/// marks it `unknown` and does not run the command again (at-most-once, as on one node).
#[test]
fn a_remediation_whose_node_died_is_not_run_again_by_another_node() {
    let mut s = Setup::new(1, "3s");
    let file = s.data.join("p01.csv");
    let runs = s.data.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    s.source = format!(
        "pipeline p01 {{\n  every 200ms\n  collect raw = csv(path: \"{}\")\n  predict hot = threshold(raw, above: 90.0)\n  respond fix = exec(hot, command: [\"sh\", \"-c\", \"echo $$ >> {}/{{{{ incident.status }}}}.log; exec sleep 60\"], timeout: 5m)\n}}\n",
        file.display(),
        runs.display()
    );
    let mut a = s.node("a");
    wait_balanced(&[&a], &s.names);
    s.wait_all_started();
    let b = s.node("b");
    s.episode("p01");
    wait_for("the remediation to start on a", Duration::from_secs(60), || {
        std::fs::read_to_string(runs.join("firing.log")).ok().filter(|t| !t.is_empty())
    });
    assert_eq!(a.owned().map(|o| o.len()), Some(1), "a runs the pipeline");
    a.engine.kill9();
    wait_for("b to take the pipeline over", Duration::from_secs(30), || b.owned().is_some_and(|o| o.len() == 1).then_some(()));
    wait_for("b to mark the interrupted run unknown", Duration::from_secs(60), || {
        (s.db.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'unknown'") == 1).then_some(())
    });
    assert!(b.log().contains("a remediation was running when its engine stopped"), "{}", b.log());
    let fired = std::fs::read_to_string(runs.join("firing.log")).unwrap();
    assert_eq!(fired.lines().count(), 1, "the firing remediation ran once: {fired}");
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM audit WHERE event = 'interrupted'"), 1);
}

// ---------------------------------------------------------------- PostgreSQL restarted

/// A PostgreSQL server of the test's own (`initdb` into a directory of its own, on a free
/// port), so that it can be stopped and started again without disturbing the shared one.
/// Run as the `postgres` user when the tests run as root (PostgreSQL refuses root).
struct OwnPostgres {
    child: Option<std::process::Child>,
    port: u16,
    dir: TempDir,
}

impl OwnPostgres {
    /// The server programs of the newest PostgreSQL installed (Debian's layout).
    fn bin() -> std::path::PathBuf {
        let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .collect();
        found.sort();
        found.pop().unwrap_or_else(|| {
            panic!("PostgreSQL's server programs are not installed (/usr/lib/postgresql/*/bin/initdb): run the tests with ./test.sh, which installs the Debian package `postgresql`.")
        })
    }

    /// `program` of the server's, as the `postgres` user when this runs as root.
    fn command(program: &str) -> Command {
        let path = OwnPostgres::bin().join(program);
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn start() -> OwnPostgres {
        let dir = TempDir::new("own-postgres");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        // The directory (and the socket's, the same) belongs to the server's user.
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
        let out = OwnPostgres::command("initdb")
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = OwnPostgres { child: None, port: 0, dir };
        pg.run(None);
        pg
    }

    /// Starts the server on `port` (a free one when None) and waits until it takes
    /// connections.
    fn run(&mut self, port: Option<u16>) {
        let (data, log) = (self.dir.join("data"), self.dir.join("postgres.log"));
        let command = |port: u16| {
            let mut c = OwnPostgres::command("postgres");
            c.arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k"])
                .arg(&data)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap());
            c
        };
        let ready = |port: u16| block_on(sqlx::PgConnection::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))).is_ok();
        let (child, port) = match port {
            None => start_on_free_port("postgres", Some(&log), command, ready),
            Some(port) => {
                let mut child = command(port).spawn().unwrap();
                wait_for_child("postgres to start again", Duration::from_secs(60), &mut child, Some(&log), || ready(port).then_some(()));
                (child, port)
            }
        };
        self.child = Some(child);
        self.port = port;
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as `pg_ctl stop` does by default (fast shutdown: SIGINT; sessions
    /// are cut) and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Starts it again, on the same port, with the same data.
    fn restart(&mut self) {
        let port = self.port;
        self.run(Some(port));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PostgreSQL restarted mid-run (fast shutdown, then started again with its data): while
/// it is down both nodes keep their leases (NATS answers) and their APIs, and report the
/// degraded store (`/api/v1/status` `store`, `/readyz` 503, `vigil_store_up 0`); data that
/// arrives meanwhile is not lost: once the server is back, its incidents open and resolve,
/// each notification sent once; and each node holds its lock on the database again (an
/// engine without `--cluster` is still refused).
#[test]
fn nodes_survive_a_postgres_restart_and_lose_nothing() {
    let mut pg = OwnPostgres::start();
    let s = Setup::with(nats_url(), Database::on(&pg.url()), 2, "3s");
    let a = s.node("a");
    let b = s.node("b");
    wait_balanced(&[&a, &b], &s.names);
    s.wait_all_started();
    s.episode("p01");
    s.wait_delivered(2);
    let store = |n: &Node| -> serde_json::Value {
        let (_, body) = http_get(n.engine.port, "/api/v1/status").expect("the API answers");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["store"].clone()
    };
    assert_eq!(store(&a)["status"], "ok");

    pg.stop();
    for n in [&a, &b] {
        let down = wait_for(&format!("{} to report the store unreachable", n.name), Duration::from_secs(30), || {
            Some(store(n)).filter(|s| s["status"] == "unreachable")
        });
        assert!(down["unreachable_since"].as_i64().is_some_and(|t| t <= vigil::time::now_ms()), "{down}");
        assert!(down["error"].as_str().is_some_and(|e| !e.is_empty()), "{down}");
        let (code, body) =
            http_get(n.engine.port, "/readyz").unwrap_or_else(|| panic!("{}'s /readyz does not answer; its log:\n{}", n.name, n.log()));
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("state store"), "{body}");
        let (_, metrics) = http_get(n.engine.port, "/metrics").unwrap();
        assert!(metrics.contains("vigil_store_up 0"), "{metrics}");
    }
    // Data arrives while the store is down; the pipelines keep running on their nodes.
    s.episode("p01");
    s.episode("p02");
    for n in [&a, &b] {
        wait_for(&format!("{} to log the store's absence", n.name), Duration::from_secs(30), || {
            n.log().contains("the state store does not answer").then_some(())
        });
    }
    assert_eq!(ownership(&[&a, &b], &s.names).map(|o| o.len()), Some(2), "the leases are kept (NATS answers)");

    pg.restart();
    for n in [&a, &b] {
        wait_for(&format!("{} to report the store back", n.name), Duration::from_secs(60), || {
            Some(store(n)).filter(|s| s["status"] == "ok" && s["unreachable_since"].is_null())
        });
    }
    s.wait_delivered_once(6);
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM incidents"), 3, "one incident per episode");
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM incidents WHERE status = 'resolved'"), 3);

    // The nodes hold their (shared) lock on the database again: an engine without
    // --cluster is refused, as before the restart.
    wait_for("the nodes to take the store's lock again", Duration::from_secs(30), || {
        (a.log().contains("engine lock is held again") && b.log().contains("engine lock is held again")).then_some(())
    });
    s.assert_engine_without_cluster_refused();
    // Dropped in reverse: the nodes, the set-up (its database, while the server runs), the server.
    drop(a);
    drop(b);
    drop(s);
    drop(pg);
}

// ---------------------------------------------------------------- 300 pipelines (benchmark)

/// 300 pipelines on three nodes, for BENCHMARKS.md (not part of the suite: `cargo test
/// --test cluster -- --ignored --nocapture three_hundred`): the time until every pipeline
/// runs and the spread; the outbox's throughput with three dispatchers (`VIGIL_BENCH_EPISODES`
/// incidents per pipeline, two notifications each, all at once); then `kill -9` of one
/// node: the time until every one of its pipelines runs on the two others, and the spread.
#[test]
#[ignore = "a benchmark: run it by name (BENCHMARKS.md)"]
fn three_hundred_pipelines_on_three_nodes() {
    let episodes: usize = std::env::var("VIGIL_BENCH_EPISODES").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let s = Setup::ticking(nats_url(), Database::new(), 300, "6s", "1s");
    let started = Instant::now();
    let mut nodes = vec![s.node("n1"), s.node("n2"), s.node("n3")];
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_for("every pipeline owned", Duration::from_secs(300), || ownership(&refs, &s.names));
    let owned_at = started.elapsed().as_secs_f64();
    let owner = wait_for("an even spread", Duration::from_secs(300), || {
        let o = ownership(&refs, &s.names)?;
        let counts: Vec<usize> = nodes.iter().map(|n| o.values().filter(|x| **x == n.name).count()).collect();
        counts.iter().all(|c| (100..=100).contains(c)).then_some(o)
    });
    let balanced_at = started.elapsed().as_secs_f64();
    let spread = |owner: &BTreeMap<String, String>, nodes: &[Node]| -> Vec<usize> {
        nodes.iter().map(|n| owner.values().filter(|x| **x == n.name).count()).collect()
    };
    eprintln!(
        "300 pipelines, 3 nodes: every pipeline running {owned_at:.1} s after the nodes started, spread {:?} at {balanced_at:.1} s",
        spread(&owner, &nodes)
    );
    s.wait_all_started();

    // The outbox: every pipeline opens and resolves `episodes` incidents at once.
    let appended = Instant::now();
    for p in &s.names {
        for _ in 0..episodes {
            s.episode(p);
        }
    }
    let expected = 2 * episodes * s.names.len();
    let by_key = s.wait_delivered(expected);
    let all = appended.elapsed().as_secs_f64();
    assert_eq!(by_key.len(), expected);
    assert!(by_key.values().all(|d| d.len() == 1), "a notification was delivered twice");
    let first_sent = s.db.scalar("SELECT MIN(sent_at) FROM outbox WHERE status = 'sent'");
    let last_sent = s.db.scalar("SELECT MAX(sent_at) FROM outbox WHERE status = 'sent'");
    let queued = s.db.scalar("SELECT MIN(created_at) FROM outbox");
    let per_node: Vec<i64> =
        nodes.iter().map(|n| s.db.scalar(&format!("SELECT COUNT(*) FROM outbox WHERE claimed_by = '{}'", n.name))).collect();
    eprintln!(
        "outbox, 3 dispatchers: {expected} notifications delivered {all:.1} s after the rows were appended; first to last send {:.2} s = {:.0} notifications/s; sent by node {per_node:?}; first queued to last sent {:.2} s",
        (last_sent - first_sent) as f64 / 1000.0,
        expected as f64 / ((last_sent - first_sent).max(1) as f64 / 1000.0),
        (last_sent - queued) as f64 / 1000.0,
    );

    // One node dies: its 100 pipelines move to the two others.
    let dead_pipelines: Vec<String> = owner.iter().filter(|(_, n)| *n == "n1").map(|(p, _)| p.clone()).collect();
    let mut dead = nodes.remove(0);
    let killed = Instant::now();
    dead.engine.kill9();
    let refs: Vec<&Node> = nodes.iter().collect();
    let mut first: Option<f64> = None;
    let owner = wait_for("the dead node's pipelines to run elsewhere", Duration::from_secs(120), || {
        let running: BTreeSet<String> = refs.iter().flat_map(|n| n.owned().unwrap_or_default()).collect();
        let moved = dead_pipelines.iter().filter(|p| running.contains(*p)).count();
        if moved > 0 && first.is_none() {
            first = Some(killed.elapsed().as_secs_f64());
        }
        (moved == dead_pipelines.len()).then(|| ownership(&refs, &s.names)).flatten()
    });
    let took = killed.elapsed().as_secs_f64();
    eprintln!(
        "kill -9 of a node with {} pipelines: the first runs elsewhere after {:.2} s, all after {took:.2} s; spread {:?}",
        dead_pipelines.len(),
        first.unwrap_or(took),
        spread(&owner, &nodes)
    );
}

// ================================================================ training as jobs
//
// Issue #19, "Training as jobs": train stages of a cluster submit their trainings to the
// work queue `PREFIX-train`; any node with a free slot (`--train-slots`) trains, the
// artifact goes to the object store `PREFIX-models`, the metadata to PostgreSQL.

/// A cluster running one pipeline `m`: a forecaster trained on `DATA/m.csv`, scored by a
/// predict stage.
struct Training {
    db: Database,
    data: TempDir,
    nats: String,
    prefix: String,
    source: String,
    /// The next row's time.
    clock: Mutex<i64>,
}

impl Training {
    fn new() -> Training {
        Training::on(nats_url(), "lookback: 8, hidden: [8], epochs: 5", 60)
    }

    /// The same, with these lines in the train stage's block after `min_samples`.
    fn with_policy(policy: &str) -> Training {
        let mut t = Training::new();
        t.source = t.source.replace("    min_samples 60\n", &format!("    min_samples 60\n{policy}"));
        t
    }

    /// On the NATS server at `nats`, the forecaster with these parameters.
    fn on(nats: String, forecaster: &str, min_samples: usize) -> Training {
        let db = Database::new();
        let data = TempDir::new("cluster-train-data");
        let file = data.join("m.csv");
        std::fs::write(&file, "timestamp,value\n").unwrap();
        let source = format!(
            "pipeline m {{\n  every 200ms\n  collect raw = csv(path: \"{}\")\n  train model = forecaster(raw, {forecaster}) {{\n    min_samples {min_samples}\n  }}\n  predict scores = model.score(raw, threshold: 0.99)\n}}\n",
            file.display()
        );
        let clock = Mutex::new(vigil::time::now_ms() - 86_400_000);
        Training { db, data, nats, prefix: unique("tj"), source, clock }
    }

    fn node(&self, name: &str, slots: usize) -> Node {
        let dir = TempDir::new(&format!("cluster-train-{name}"));
        std::fs::write(dir.join("p.vigil"), &self.source).unwrap();
        let slots = slots.to_string();
        let args =
            ["--cluster", &self.nats, "--node", name, "--cluster-prefix", &self.prefix, "--lease-ttl", "3s", "--train-slots", &slots];
        let engine = Engine::start(&dir, "p.vigil", "token", &[("VIGIL_STORE", self.db.url.clone())], &args);
        Node { name: name.to_owned(), engine, dir }
    }

    /// Appends `n` rows of a noisy sine, a minute apart.
    fn rows(&self, n: usize) {
        let mut t = self.clock.lock().unwrap();
        let mut rows = String::new();
        for _ in 0..n {
            let i = (*t / 60_000) as f64;
            rows.push_str(&format!("{},{:.3}\n", vigil::time::format_timestamp(*t), 50.0 + 10.0 * (i * 0.3).sin() + (i % 7.0) * 0.1));
            *t += 60_000;
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(self.data.join("m.csv")).unwrap();
        f.write_all(rows.as_bytes()).unwrap();
    }

    /// The first column of the first row of `sql`, as text.
    fn text(&self, sql: &str) -> String {
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.db.url).await.unwrap();
            let v: String = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
            let _ = conn.close().await;
            v
        })
    }

    /// Runs `f` on a JetStream context of the test's NATS server.
    fn js<T: Send + 'static>(
        &self,
        f: impl FnOnce(async_nats::jetstream::Context) -> futures_util::future::BoxFuture<'static, T> + Send + 'static,
    ) -> T {
        let nats = self.nats.clone();
        std::thread::spawn(move || {
            block_on(async move { f(async_nats::jetstream::new(async_nats::connect(nats.as_str()).await.unwrap())).await })
        })
        .join()
        .unwrap()
    }
}

impl Drop for Training {
    fn drop(&mut self) {
        drop_buckets(&self.nats, &self.prefix);
    }
}

/// A node's `/metrics` line for the model `m.model`'s `metric`, if any.
fn model_metric(n: &Node, metric: &str) -> Option<f64> {
    let (code, body) = http("GET", n.engine.port, "/metrics", "", &[("Authorization", "Bearer token")])?;
    if code != 200 {
        return None;
    }
    body.lines().find(|l| l.starts_with(&format!("{metric}{{stage=\"m.model\""))).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The owner trains nothing (`--train-slots 0`): its training is a job another node
/// runs; the version is in PostgreSQL with its artifact in the object store, and the
/// owner scores with it. A corrupt job on the queue, a job for a version registered
/// already and one for a stage not in the plan are dropped with a log line. Then the
/// owner is killed (`kill -9`): the new owner loads the version from the object store and
/// does not train it again. The time from the job's submission to the owner having the
/// version is printed.
#[test]
fn training_runs_as_a_job_on_another_node_and_survives_the_owners_death() {
    let s = Training::new();
    let owner = s.node("owner", 0);
    wait_for("the owner to run m", Duration::from_secs(60), || owner.owned().is_some_and(|o| o.contains("m")).then_some(()));
    wait_for("m's first tick", Duration::from_secs(60), || (s.db.scalar("SELECT COUNT(*) FROM cursors") >= 1).then_some(()));
    let workers = [s.node("w1", 1), s.node("w2", 1)];
    for w in &workers {
        wait_for(&format!("{} to answer", w.name), Duration::from_secs(60), || w.owned());
        wait_for(&format!("{}'s worker", w.name), Duration::from_secs(60), || w.log().contains("training as jobs: ready").then_some(()));
    }
    assert_eq!(owner.owned().unwrap(), BTreeSet::from(["m".to_owned()]), "one pipeline: the owner keeps it");

    // Bad input: a message on the queue that is not a job is dropped, nothing panics.
    let subject = format!("{}.train.jobs", s.prefix);
    s.js(move |js| {
        Box::pin(async move {
            js.publish(subject, "{not a job".into()).await.unwrap().await.unwrap();
        })
    });
    wait_for("a worker to drop the corrupt job", Duration::from_secs(60), || {
        workers.iter().any(|w| w.log().contains("is not a training job")).then_some(())
    });

    // Enough samples to train: the owner submits a job, a worker trains it.
    s.rows(100);
    let trained_by = wait_for("the version trained by a worker", Duration::from_secs(120), || {
        (s.db.scalar("SELECT COUNT(*) FROM audit WHERE event = 'trained'") >= 1)
            .then(|| s.text("SELECT detail FROM audit WHERE event = 'trained'"))
    });
    assert!(trained_by.starts_with("v1 trained by node w"), "trained by a worker, not the owner: {trained_by}");
    assert!(trained_by.contains("a job of owner"), "{trained_by}");
    let path = s.text("SELECT path FROM models WHERE stage_key = 'm.model' AND version = 1 AND active");
    let prefix = format!("nats-object://{}-models/m.model/", s.prefix);
    assert!(path.starts_with(&prefix) && path.ends_with("/v1.bpk"), "the artifact is in the object store: {path}");
    let (bucket, name) = (format!("{}-models", s.prefix), path[prefix.len() - "m.model/".len()..].to_owned());
    let size = s.js(move |js| {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;
            let mut o = js.get_object_store(bucket).await.unwrap().get(name).await.unwrap();
            let mut bytes = Vec::new();
            o.read_to_end(&mut bytes).await.unwrap();
            bytes.len()
        })
    });
    assert!(size > 0, "the object store holds the artifact");
    // The owner uses it: its active version, and scores from it.
    wait_for("the owner to use v1", Duration::from_secs(60), || (model_metric(&owner, "vigil_model_version") == Some(1.0)).then_some(()));
    let log = owner.log();
    let line = log.lines().find(|l| l.contains("a job of the cluster's work queue")).expect("the owner logs the version it got");
    let field = |name: &str| -> u64 {
        line.split(&format!("{name}=")).nth(1).and_then(|r| r.split(' ').next()).and_then(|v| v.parse().ok()).expect(name)
    };
    eprintln!(
        "training job: submitted by the owner, trained by another node, version in the owner's hands after {} ms (of which training {} ms)",
        field("waited_ms"),
        field("train_ms")
    );
    assert!(!log.contains("training a job of the work queue"), "the owner (--train-slots 0) trained nothing");
    s.rows(150);
    wait_for("the owner to score with v1", Duration::from_secs(60), || model_metric(&owner, "vigil_model_error_ratio"));

    // Jobs that must not train: v1 again (registered already), and a stage not in the plan.
    let meta: vigil::learn::ModelMeta = serde_json::from_str(&s.text("SELECT meta FROM models WHERE version = 1")).unwrap();
    let job = |key: &str, fingerprint: &str| vigil::learn::jobs::TrainJob {
        id: unique("job"),
        key: key.into(),
        fingerprint: fingerprint.into(),
        pipeline_version: meta.pipeline_version.clone(),
        series: meta.series.clone(),
        version: 1,
        regime_from: None,
        spec: vigil::learn::Spec::Baseline { season_ms: 3_600_000, bucket_ms: 60_000 },
        activate: true,
        samples: Some(vigil::learn::jobs::Samples::default()),
        samples_at: None,
        warm: None,
        owner: "test".into(),
        reply: String::new(),
        submitted_at: 0,
    };
    for j in [job("m.model", &meta.fingerprint), job("gone.model", "f")] {
        let (subject, payload) = (format!("{}.train.jobs", s.prefix), serde_json::to_vec(&j).unwrap());
        s.js(move |js| {
            Box::pin(async move {
                js.publish(subject, payload.into()).await.unwrap().await.unwrap();
            })
        });
    }
    wait_for("the workers to drop both jobs", Duration::from_secs(60), || {
        let logs: String = workers.iter().map(Node::log).collect();
        (logs.contains("whose version is registered already; dropped") && logs.contains("a stage that is not in the plan")).then_some(())
    });

    // The owner dies: the new owner loads v1 from the object store and trains nothing.
    let mut owner = owner;
    owner.engine.kill9();
    let next =
        wait_for("another node to run m", Duration::from_secs(60), || workers.iter().find(|w| w.owned().is_some_and(|o| o.contains("m"))));
    wait_for("the new owner to load v1", Duration::from_secs(60), || {
        (model_metric(next, "vigil_model_version") == Some(1.0)).then_some(())
    });
    let log = next.log();
    assert!(log.lines().any(|l| l.contains("loaded model") && l.contains("version=1")), "{log}");
    s.rows(150);
    wait_for("the new owner to score with v1", Duration::from_secs(60), || model_metric(next, "vigil_model_error_ratio"));
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM models"), 1, "one version, never trained again");
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM audit WHERE event = 'trained'"), 1, "one training");
    let trainings: usize = workers.iter().map(|w| w.log().matches("trained a job of the work queue").count()).sum();
    assert_eq!(trainings, 1, "one job trained in the whole cluster");
    assert!(!workers.iter().any(|w| w.log().contains("panicked")), "no worker panicked");
}

/// A NATS server of the test's own whose messages are at most 4 KiB: a job's samples do
/// not fit in one.
fn start_small_nats(dir: &TempDir) -> Server {
    let bin = require("nats-server", "nats-server");
    let log = dir.join("nats.log");
    let (child, port) = start_on_free_port(
        "nats-server with max_payload 4 KiB",
        Some(&log),
        |port| {
            let conf = dir.join("nats.conf");
            let store = dir.join("jetstream");
            std::fs::write(
                &conf,
                format!("listen: 127.0.0.1:{port}\nmax_payload: 4096\njetstream {{\n  store_dir: \"{}\"\n}}\n", store.display()),
            )
            .unwrap();
            let mut c = Command::new(&bin);
            c.arg("-c").arg(&conf).stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
            c
        },
        |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    Server { child, port, dir: TempDir::new("nats-small") }
}

/// A worker killed (`kill -9`) in the middle of a job: the job is delivered again, after
/// the ack wait, to the node that joins, which trains and registers it; the owner gets
/// the version. The job was too big for one NATS message (a server with a 4 KiB
/// `max_payload`): its samples went through the object store, and are removed once the
/// job is done. The time from the kill to the version registered is printed.
#[test]
fn a_job_whose_worker_dies_is_trained_by_another_and_big_samples_go_through_the_object_store() {
    let nats_dir = TempDir::new("nats-train");
    let nats = start_small_nats(&nats_dir);
    // 140 samples, no validation split (under 50 examples): every epoch runs, for seconds.
    let s = Training::on(format!("nats://127.0.0.1:{}", nats.port), "lookback: 100, hidden: [32], epochs: 20000", 140);
    let owner = s.node("owner", 0);
    wait_for("the owner to run m", Duration::from_secs(60), || owner.owned().is_some_and(|o| o.contains("m")).then_some(()));
    wait_for("m's first tick", Duration::from_secs(60), || (s.db.scalar("SELECT COUNT(*) FROM cursors") >= 1).then_some(()));
    let mut w1 = s.node("w1", 1);
    wait_for("w1's worker", Duration::from_secs(60), || w1.log().contains("training as jobs: ready").then_some(()));
    s.rows(140);
    wait_for("the owner to put the samples in the object store", Duration::from_secs(60), || {
        owner.log().contains("its samples go to the object store").then_some(())
    });
    wait_for("w1 to start training", Duration::from_secs(60), || w1.log().contains("training a job of the work queue").then_some(()));
    w1.engine.kill9();
    let killed = Instant::now();
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM models"), 0, "killed mid-job: nothing registered (train longer if this fails)");
    let w2 = s.node("w2", 1);
    let trained_by = wait_for("the job delivered again and trained", Duration::from_secs(180), || {
        (s.db.scalar("SELECT COUNT(*) FROM audit WHERE event = 'trained'") >= 1)
            .then(|| s.text("SELECT detail FROM audit WHERE event = 'trained'"))
    });
    let took = killed.elapsed().as_secs_f64();
    assert!(trained_by.starts_with("v1 trained by node w2"), "{trained_by}");
    let log = w2.log();
    assert!(log.lines().any(|l| l.contains("training a job of the work queue") && l.contains("delivered=2")), "{log}");
    eprintln!("worker killed mid-job: the job trained and registered by another node {took:.1} s after the kill ({trained_by})");
    wait_for("the owner to use v1", Duration::from_secs(60), || (model_metric(&owner, "vigil_model_version") == Some(1.0)).then_some(()));
    assert_eq!(s.db.scalar("SELECT COUNT(*) FROM models"), 1);
    // The samples' object is gone; the version's artifact and metadata are there.
    let bucket = format!("{}-models", s.prefix);
    let names = s.js(move |js| {
        Box::pin(async move {
            let store = js.get_object_store(bucket).await.unwrap();
            let mut list = store.list().await.unwrap();
            let mut names = Vec::new();
            while let Some(Ok(o)) = futures_util::StreamExt::next(&mut list).await {
                names.push(o.name);
            }
            names
        })
    });
    assert!(!names.iter().any(|n| n.starts_with("jobs/")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("/v1.bpk")) && names.iter().any(|n| n.ends_with("/v1.json")), "{names:?}");
    drop(w2);
    drop(owner);
    drop(s);
    drop(nats);
}

/// Retraining with `warm_start true` under `--cluster`: the second job names the first
/// version's artifact, and the worker warm starts from it, read from the object store.
#[test]
fn a_retraining_job_warm_starts_from_the_previous_version_in_the_object_store() {
    let s = Training::with_policy("    retrain every 60 samples\n    warm_start true\n");
    let owner = s.node("owner", 0);
    wait_for("the owner to run m", Duration::from_secs(60), || owner.owned().is_some_and(|o| o.contains("m")).then_some(()));
    wait_for("m's first tick", Duration::from_secs(60), || (s.db.scalar("SELECT COUNT(*) FROM cursors") >= 1).then_some(()));
    let w = s.node("w1", 1);
    wait_for("w1's worker", Duration::from_secs(60), || w.log().contains("training as jobs: ready").then_some(()));
    s.rows(60);
    wait_for("v1", Duration::from_secs(60), || (model_metric(&owner, "vigil_model_version") == Some(1.0)).then_some(()));
    s.rows(60);
    wait_for("v2", Duration::from_secs(60), || (model_metric(&owner, "vigil_model_version") == Some(2.0)).then_some(()));
    let log = w.log();
    assert!(
        log.lines().any(|l| l.contains("training a job of the work queue") && l.contains("version=2") && l.contains("warm_from=1")),
        "{log}"
    );
    assert!(!log.contains("cannot load the warm-start version"), "{log}");
    let path = s.text("SELECT path FROM models WHERE version = 2 AND active");
    assert!(path.starts_with("nats-object://") && path.ends_with("/v2.bpk"), "{path}");
}
