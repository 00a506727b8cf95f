//! From a file write to the new version visible in `GET /api/v1/status`: starts the
//! release binary on a copy of the runnable pipelines, edits a file 100 times, and
//! prints the p50 and p99 latency (debounce included), and the longest gap between the
//! ticks of an unchanged pipeline that ticks every 10 ms while the reloads happen.
//!
//! `cargo build --release && cargo run --release --example reload_latency`

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_owned())
}

fn version(port: u16) -> Option<String> {
    let body = get(port, "/api/v1/status")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(v["version"].as_str()?.to_owned())
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("vigil-reload-bench-{}", std::process::id()));
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    for f in ["demo.vigil", "nab.vigil"] {
        std::fs::copy(root.join("pipelines").join(f), pipelines.join(f)).unwrap();
    }
    // An unchanged pipeline that ticks every 10 ms: its ticks must not stall.
    std::fs::write(pipelines.join("steady.vigil"), "pipeline steady {\n  every 10ms\n  collect raw = synthetic(series: 1)\n  predict z = zscore(raw)\n  respond r = log(z, when: false)\n}\n").unwrap();
    let demo = std::fs::read_to_string(pipelines.join("demo.vigil")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(root.join("target/release/vigil"))
        .args([
            "run",
            pipelines.to_str().unwrap(),
            "--state",
            dir.join("state").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "warn,vigil::engine=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("build the release binary first: cargo build --release");
    // Drain the log as it comes, so that a full pipe never blocks the engine.
    let mut stderr = child.stderr.take().unwrap();
    let log_thread = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut current = loop {
        if let Some(v) = version(port) {
            break v;
        }
        assert!(Instant::now() < deadline, "the engine did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut latencies = Vec::new();
    for i in 0..100 {
        let text = demo.replace("threshold: 5.0", &format!("threshold: {}.{:02}", 5 + i / 100, i % 100 + 1));
        let t0 = Instant::now();
        std::fs::write(pipelines.join("demo.vigil"), text).unwrap();
        loop {
            if let Some(v) = version(port) {
                if v != current {
                    current = v;
                    break;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "reload {i} not seen");
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(t0.elapsed());
        // Let the watcher settle between edits, as an engineer would between saves.
        std::thread::sleep(Duration::from_millis(150));
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let log = log_thread.join().unwrap();
    // The longest time a tick of `steady` waited beyond its 10 ms period.
    let mut ticks: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("pipeline=steady") && l.contains(" tick"))
        .filter_map(|l| {
            chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok().map(|t| t.timestamp_micros() as f64 / 1000.0)
        })
        .collect();
    ticks.sort_by(f64::total_cmp);
    let worst_gap = ticks.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "write -> new version in /api/v1/status, 100 edits (debounce 100 ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; steady pipeline: {} ticks seen, longest gap between ticks {:.1} ms (period 10 ms)",
        ms(latencies[49]),
        ms(latencies[98]),
        ms(latencies[99]),
        ticks.len(),
        worst_gap
    );
    let _ = std::fs::remove_dir_all(&dir);
}
