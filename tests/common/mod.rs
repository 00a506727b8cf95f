//! Helpers shared by the integration tests: temporary directories, free ports, real
//! servers started on 127.0.0.1, and waiting for conditions (never fixed sleeps).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vigil-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` like [`wait_for`], but fails at once if `child` exits first, showing the end
/// of `log` (where the child's stderr goes), so that a server that could not start says why.
/// On a timeout the child is killed.
pub fn wait_for_child<T>(what: &str, timeout: Duration, child: &mut Child, log: Option<&Path>, mut f: impl FnMut() -> Option<T>) -> T {
    let tail = |log: Option<&Path>| {
        let text = log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_owned()
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("waiting for {what}: the process exited ({status}); its log:\n{}", tail(log));
        }
        if Instant::now() >= deadline {
            // Not left running after the test fails.
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?} waiting for {what}; the log:\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Spawns `cmd` (a `vigil run` without `--listen`) on a port the system picks, and waits
/// until its /healthz answers 200; returns the child and the port. The address comes from
/// `--addr-file DIR/vigil.addr`: a port picked beforehand could be taken by the time the
/// engine binds it. `log` is where `cmd` sends its stderr, shown if the engine fails.
pub fn spawn_engine(cmd: &mut Command, dir: &Path, log: Option<&Path>) -> (Child, u16) {
    let addr_file = dir.join("vigil.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut child = cmd.args(["--listen", "127.0.0.1:0", "--addr-file"]).arg(&addr_file).spawn().expect("starting vigil run");
    let port = wait_for_child("the engine to listen", Duration::from_secs(60), &mut child, log, || {
        let addr: std::net::SocketAddr = std::fs::read_to_string(&addr_file).ok()?.trim().parse().ok()?;
        Some(addr.port())
    });
    wait_for_child("the engine to answer /healthz", Duration::from_secs(60), &mut child, log, || {
        http_get(port, "/healthz").filter(|(c, _)| *c == 200)
    });
    (child, port)
}

/// Starts a server that must be told its port: `command(port)` on a free port, until
/// `ready(port)`. A port found free can be taken before the server binds it, so a server
/// that exits at once is started again on another port (three tries).
pub fn start_on_free_port(what: &str, log: Option<&Path>, command: impl Fn(u16) -> Command, ready: impl Fn(u16) -> bool) -> (Child, u16) {
    for attempt in 1..=3 {
        let port = free_port();
        let mut child = command(port).spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ready(port) {
                return (child, port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let text = log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
                assert!(attempt < 3, "{what} exited ({status}) three times; its log:\n{text}");
                eprintln!("{what} exited ({status}) on port {port}; trying another port");
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("timed out after 60s waiting for {what} on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    unreachable!("the loop returns or panics")
}

/// A blocking HTTP GET of `http://127.0.0.1:{port}{path}`: status and body, or None when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http("GET", port, path, "", &[])
}

/// A minimal blocking HTTP/1.1 client (tests only).
pub fn http(method: &str, port: u16, path: &str, body: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    // Chunked bodies: good enough to search in.
    Some((status, body))
}

/// A child process killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a server binary or fails loudly: the README's test command installs it.
pub fn require(binary: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin"]) {
        let p = Path::new(dir).join(binary);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{binary}` is not installed. Run the tests with ./test.sh, which installs the Debian package `{package}`.");
}

/// Starts a real Prometheus on a free port, scraping itself every second, and waits until
/// it is ready.
pub fn start_prometheus() -> Server {
    let bin = require("prometheus", "prometheus");
    let dir = TempDir::new("prometheus");
    let log = dir.join("prometheus.log");
    let (child, port) = start_on_free_port(
        "prometheus",
        Some(&log),
        |port| {
            let cfg = dir.join("prometheus.yml");
            std::fs::write(&cfg, format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")).unwrap();
            let mut c = Command::new(&bin);
            c.arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            c
        },
        |port| http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200),
    );
    Server { child, port, dir }
}

/// The vigil binary the tests run: cargo's, or `VIGIL_TEST_BIN` (a copy, for long
/// measurements while the shared target directory may be rebuilt).
pub fn vigil_bin() -> PathBuf {
    std::env::var_os("VIGIL_TEST_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vigil")), PathBuf::from)
}

/// A `vigil run` of the real binary in a test directory, killed on drop.
pub struct Engine {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Engine {
    /// `vigil run FILE --state state --no-watch ARGS` in `dir` with `VIGIL_API_TOKEN`
    /// set to `token`, stdout and stderr in `dir/stdout.log` and `dir/stderr.log`.
    pub fn start(dir: &TempDir, file: &str, token: &str, env: &[(&str, String)], args: &[&str]) -> Engine {
        let mut cmd = Command::new(vigil_bin());
        cmd.current_dir(dir.path())
            .args(["run", file, "--state", "state", "--no-watch"])
            .args(args)
            .env("NO_COLOR", "1")
            .env("VIGIL_API_TOKEN", token)
            .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stderr.log")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, port) = spawn_engine(&mut cmd, dir.path(), Some(&dir.join("stderr.log")));
        Engine { child: Some(child), port, dir: dir.path().to_path_buf() }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    pub fn incidents(&self) -> Vec<serde_json::Value> {
        http_get(self.port, "/api/v1/incidents")
            .and_then(|(_, b)| serde_json::from_str::<Vec<serde_json::Value>>(&b).ok())
            .unwrap_or_default()
    }

    pub fn incident(&self, id: &str) -> serde_json::Value {
        http_get(self.port, &format!("/api/v1/incidents/{id}")).and_then(|(_, b)| serde_json::from_str(&b).ok()).unwrap_or_default()
    }

    /// Waits for the first incident whose status is `status`.
    pub fn wait_incident(&self, status: &str) -> serde_json::Value {
        wait_for(&format!("an incident {status}"), Duration::from_secs(60), || self.incidents().into_iter().find(|i| i["status"] == status))
    }

    /// Waits until every notification of the incident left the outbox (sent or failed).
    pub fn wait_settled(&self, id: &str, count: usize) -> serde_json::Value {
        wait_for("the notifications to settle", Duration::from_secs(60), || {
            let v = self.incident(id);
            let notes = v["notifications"].as_array()?;
            (notes.len() >= count && notes.iter().all(|n| n["status"] != "pending")).then_some(v)
        })
    }

    /// The ticks the engine has run (every pipeline, every outcome), from `/metrics`.
    pub fn ticks(&self) -> u64 {
        http_get(self.port, "/metrics")
            .map(|(_, text)| {
                text.lines()
                    .filter(|l| l.starts_with("vigil_ticks_total{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64
            })
            .unwrap_or(0)
    }

    /// Waits for the engine's first tick: from then on, a data file that appears is read
    /// from its beginning (one that was there at the first tick is started at its end).
    pub fn wait_first_tick(&self) {
        wait_for("the first tick", Duration::from_secs(60), || (self.ticks() > 0).then_some(()));
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }
}

/// A CA and a certificate for 127.0.0.1 that it signs, as `ca.pem`, `cert.pem` and
/// `key.pem` in `dir`.
pub fn certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "vigil test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = server.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// CSV rows `timestamp,value`, `step_ms` apart, the last `end_ago` steps before now (a
/// negative `end_ago`: after now).
pub fn rows_until_now(values: &[f64], end_ago: i64, step_ms: i64) -> String {
    let now = vigil::time::now_ms();
    let n = values.len() as i64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{},{v}\n", vigil::time::format_timestamp(now - (end_ago + n - 1 - i as i64) * step_ms)))
        .collect()
}

/// One HTTP/1.1 request, as the tests' receivers (webhook endpoints) read it.
pub struct Request {
    pub path: String,
    /// Header names in lower case, values trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads the next request of a (keep-alive) connection: `None` when the connection ends
/// or sends something that is not a request.
pub fn read_request(r: &mut impl std::io::BufRead) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_owned();
    let (mut headers, mut len) = (Vec::new(), 0);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok()?;
        }
        headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { path, headers, body })
}
