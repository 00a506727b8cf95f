//! Measures the engine under two attacks (BENCHMARKS.md, "Hardening"):
//!
//! 1. **Slow connections**: 2 000 connections that send half a header, against an engine
//!    whose open-file limit is 1 024; `/healthz` latency before and during the attack.
//! 2. **A cardinality flood**: 100 000 distinct label values posted to a webhook whose
//!    pipeline counts per label (`max_series` default 10 000, `series_idle 30s`); the
//!    engine's RSS before, at its peak, and once the idle series are forgotten.
//!
//! ```sh
//! cargo build --release && cargo run --release --example attack -- target/release/vigil
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn request(port: u16, method: &str, path: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

#[allow(clippy::zombie_processes)] // the child goes to the caller, which kills and waits for it
fn start(vigil: &Path, dir: &Path, nofile: u32) -> (Child, u16) {
    let addr = dir.join("addr");
    let _ = std::fs::remove_file(&addr);
    let mut child = Command::new("sh")
        .current_dir(dir)
        .args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")])
        .arg(vigil)
        .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "127.0.0.1:0", "--addr-file", "addr"])
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("starting vigil");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(a) = std::fs::read_to_string(&addr).ok().and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok()) {
            if request(a.port(), "GET", "/healthz", "") == Some(200) {
                return (child, a.port());
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the engine did not start: {}", std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints the `/metrics` lines that start with one of `prefixes`.
fn print_metrics(port: u16, prefixes: &[&str]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    for l in out.lines().filter(|l| prefixes.iter().any(|p| l.starts_with(p))) {
        println!("  {l}");
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn healthz_ms(port: u16, n: usize) -> (f64, f64, usize) {
    let mut times = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        let t = Instant::now();
        match request(port, "GET", "/healthz", "") {
            Some(200) => times.push(t.elapsed().as_secs_f64() * 1000.0),
            _ => failed += 1,
        }
    }
    if times.is_empty() {
        return (f64::NAN, f64::NAN, failed);
    }
    (percentile(&mut times, 0.5), percentile(&mut times, 0.99), failed)
}

fn main() {
    let vigil = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/release/vigil".into()));
    let vigil = vigil.canonicalize().unwrap_or(vigil);
    let dir = std::env::temp_dir().join(format!("vigil-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.vigil"),
        "pipeline p {\n  on webhook \"/hooks/am\"\n  every 1s\n  collect events = webhook_events(format: \"alertmanager\", max_body: 67108864, rate_limit: 100000)\n  preprocess counts = aggregate(events, by: [\"alertname\"], op: \"count\") {\n    series_idle 30s\n  }\n  predict hot = zscore(counts, window: 1h)\n}\n",
    )
    .unwrap();

    // 1. Slow connections under a 1 024 open-file limit.
    let (mut engine, port) = start(&vigil, &dir, 1024);
    let (p50, p99, _) = healthz_ms(port, 200);
    println!("healthz before the attack: p50 {p50:.2} ms, p99 {p99:.2} ms");
    let mut held = Vec::new();
    let t = Instant::now();
    for _ in 0..2000 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            held.push(s);
        }
    }
    println!("opened {} slow connections in {:.2} s", held.len(), t.elapsed().as_secs_f64());
    let (p50, p99, failed) = healthz_ms(port, 200);
    println!("healthz during the attack: p50 {p50:.2} ms, p99 {p99:.2} ms, {failed} of 200 failed");
    print_metrics(port, &["vigil_http_connections"]);
    drop(held);

    // 2. A cardinality flood through the webhook.
    let before = rss_mib(engine.id());
    let mut peak = before;
    let t = Instant::now();
    for batch in 0..100 {
        let alerts: Vec<String> = (0..1000)
            .map(|i| {
                let n = batch * 1000 + i;
                format!(r#"{{"status":"firing","labels":{{"alertname":"flood{n}"}},"annotations":{{}},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f{n}"}}"#)
            })
            .collect();
        let body = format!(
            r#"{{"version":"4","status":"firing","receiver":"v","groupKey":"g","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"x","alerts":[{}]}}"#,
            alerts.join(",")
        );
        let mut code = request(port, "POST", "/hooks/am", &body);
        while code == Some(503) {
            std::thread::sleep(Duration::from_millis(20));
            code = request(port, "POST", "/hooks/am", &body);
        }
        assert_eq!(code, Some(202));
        peak = peak.max(rss_mib(engine.id()));
    }
    println!("posted 100 000 distinct label values in {:.1} s", t.elapsed().as_secs_f64());
    for _ in 0..50 {
        peak = peak.max(rss_mib(engine.id()));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle for series_idle (30 s), then swept.
    std::thread::sleep(Duration::from_secs(40));
    let after = rss_mib(engine.id());
    print_metrics(port, &["vigil_skipped_total", "vigil_stage_items_total{pipeline=\"p\",stage=\"p.counts\"}"]);
    println!("RSS: before {before:.1} MiB, peak {peak:.1} MiB, after the idle series expired {after:.1} MiB");
    let _ = engine.kill();
    let _ = engine.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
