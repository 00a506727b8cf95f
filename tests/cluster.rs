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
//! - bad input: a wrong NATS URL, NATS without JetStream, `--cluster` without PostgreSQL.
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
}

impl Database {
    fn new() -> Database {
        let name = unique("vigil_test_cluster");
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&pg_url()).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {} ({e}): run the tests with ./test.sh, which installs and starts it, \
                     or point VIGIL_TEST_PG at one whose role may CREATE DATABASE.",
                    vigil::store::redact(&pg_url())
                )
            });
            conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
            let _ = conn.close().await;
        });
        let url = with_database(&pg_url(), &name);
        Database { name, url }
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
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_url()).await {
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
                for bucket in ["leases", "nodes"] {
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
        let db = Database::new();
        let rx = Receiver::start();
        let data = TempDir::new("cluster-data");
        let names: Vec<String> = (1..=pipelines).map(|i| format!("p{i:02}")).collect();
        let mut source = String::new();
        for n in &names {
            let file = data.join(&format!("{n}.csv"));
            std::fs::write(&file, "timestamp,value\n").unwrap();
            source.push_str(&format!(
                "pipeline {n} {{\n  every 200ms\n  collect raw = csv(path: \"{}\")\n  predict hot = threshold(raw, above: 90.0)\n  respond hook = webhook(hot, url: \"http://127.0.0.1:{}/{n}\")\n}}\n\n",
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
    let other = TempDir::new("cluster-intruder");
    std::fs::write(other.join("p.vigil"), &s.source).unwrap();
    let out = Command::new(vigil_bin())
        .current_dir(other.path())
        .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "127.0.0.1:0", "--store", &s.db.url])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another vigil is running on the state database"), "{stderr}");

    let mut takeovers = Vec::new();
    let mut episodes = 0;
    for round in 0..kills {
        // An incident under way on every pipeline, then the owner of one of them dies.
        for p in &s.names {
            s.episode(p);
            episodes += 1;
        }
        let victim = &s.names[round % s.names.len()];
        let refs: Vec<&Node> = nodes.iter().collect();
        let owner = wait_for("every pipeline owned", Duration::from_secs(30), || ownership(&refs, &s.names));
        let at = nodes.iter().position(|n| n.name == owner[victim]).unwrap();
        let mut dead = nodes.remove(at);
        let killed = Instant::now();
        dead.engine.kill9();
        let refs: Vec<&Node> = nodes.iter().collect();
        let new_owner = wait_for(&format!("another node to run {victim}"), Duration::from_secs(30), || {
            refs.iter().find(|n| n.owned().is_some_and(|o| o.contains(victim))).map(|n| n.name.clone())
        });
        let took = killed.elapsed().as_secs_f64();
        eprintln!("takeover {}: {victim} from {} to {new_owner} in {took:.2} s", round + 1, dead.name);
        takeovers.push(took);
        // Every pipeline of the dead node runs elsewhere; a new node joins and gets its share.
        wait_for("the dead node's pipelines to run elsewhere", Duration::from_secs(30), || ownership(&refs, &s.names));
        nodes.push(s.node(&format!("{}-{}", dead.name.split('-').next().unwrap(), round + 1)));
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_balanced(&refs, &s.names);
    }

    // Every incident fired and resolved, each notification delivered exactly once.
    let by_key = s.wait_delivered(2 * episodes);
    let doubled: Vec<_> = by_key.iter().filter(|(_, d)| d.len() > 1).map(|(k, d)| (k.clone(), d.len())).collect();
    assert!(doubled.is_empty(), "notifications delivered more than once: {doubled:?}");
    assert_eq!(by_key.len(), 2 * episodes, "one firing and one resolved per incident: {:?}", by_key.keys().collect::<Vec<_>>());
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
    let by_key = s.wait_delivered(6);
    let doubled: Vec<_> = by_key.iter().filter(|(_, d)| d.len() > 1).map(|(k, _)| k.clone()).collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
    assert_eq!(by_key.len(), 6, "two notifications per incident, nothing more");
    // Dropped in reverse: the node, the set-up (its buckets, while NATS runs), NATS.
    drop(a);
    drop(s);
    drop(nats);
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
    // 20 s later (past the 10 s claim): b claims what a left, and a may not send it.
    let later = now + 20_000;
    let theirs = b.claim_due(later, 10, &stages).await.unwrap();
    assert_eq!(theirs.iter().map(|r| r.id).collect::<Vec<_>>(), mine.iter().map(|r| r.id).collect::<Vec<_>>());
    assert!(matches!(a.mark_started(mine[1].id, later).await, Err(StoreError::ClaimLost { .. })));
    b.mark_started(mine[1].id, later).await.unwrap();
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
