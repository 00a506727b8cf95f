//! `vigil run` and `vigil replay` as users run them: the real binary, real files, real
//! HTTP, real signals.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1");
    c
}

#[test]
fn the_demo_runs_serves_its_api_and_stops_cleanly_on_sigterm() {
    let dir = TempDir::new("run-demo");
    let state = dir.join("state");
    let log = dir.join("stderr.log");
    let (mut child, port) = spawn_engine(
        vigil()
            .args(["run", "pipelines/demo.vigil", "--state", state.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
        dir.path(),
        Some(&log),
    );
    let _guard = KillOnDrop(child.id());
    assert_eq!(http_get(port, "/healthz").map(|(c, b)| (c, b.trim().to_owned())), Some((200, "ok".to_owned())));
    // Three ticks, each recorded.
    let metrics = wait_for("three ticks", Duration::from_secs(30), || {
        let (_, m) = http_get(port, "/metrics")?;
        let ticks: f64 =
            m.lines().find(|l| l.starts_with("vigil_ticks_total{pipeline=\"demo\",outcome=\"ok\"}"))?.rsplit(' ').next()?.parse().ok()?;
        (ticks >= 3.0).then_some(m)
    });
    assert!(metrics.contains("# TYPE vigil_anomaly_score gauge"));
    assert!(
        metrics.contains("vigil_anomaly_score{pipeline=\"demo\",stage=\"demo.scores\",series=\"synthetic{series=\\\"0\\\"}\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_stage_duration_seconds_count{pipeline=\"demo\",stage=\"demo.raw\"}"));
    // Every scraped line parses as the text exposition format.
    let exp = vigil::prom::parse_exposition(&metrics);
    assert!(exp.issues.is_empty(), "{:?}", exp.issues);

    let (code, status) = http_get(port, "/api/v1/status").unwrap();
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["version"].as_str().unwrap().len(), 16);
    assert_eq!(status["pipelines"][0]["name"], "demo");
    let stages = status["stages"].as_array().unwrap();
    assert_eq!(stages.iter().map(|s| s["key"].as_str().unwrap()).collect::<Vec<_>>(), ["demo.raw", "demo.scores", "demo.console"]);
    assert!(stages.iter().all(|s| s["fingerprint"].as_str().unwrap().len() == 16 && s["generation"] == 1));
    assert_eq!(status["last_reload"]["outcome"], "applied");
    // Incidents: a JSON list (the demo may have opened some by now), each of the demo.
    let (code, incidents) = http_get(port, "/api/v1/incidents").unwrap();
    assert_eq!(code, 200);
    let incidents: Vec<serde_json::Value> = serde_json::from_str(&incidents).unwrap();
    assert!(incidents.iter().all(|i| i["pipeline"] == "demo" && (i["status"] == "firing" || i["status"] == "resolved")), "{incidents:?}");

    // SIGTERM: exit 0 within 5 s.
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let exit = wait_for("the engine to exit", Duration::from_secs(5), || child.try_wait().unwrap());
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert_eq!(exit.code(), Some(0));
    assert!(!dir.join("vigil.addr").exists(), "the address file is removed on a clean stop");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("stopped") && log.contains("clean=true"), "{log}");

    // The run history is in the SQLite file, with the version each run used.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runs = rt.block_on(async {
        use vigil::store::prelude::*;
        let store = vigil::store::SqliteStore::open(&state).await.unwrap();
        store.recent_runs("demo", 100).await.unwrap()
    });
    assert!(runs.len() >= 3);
    assert!(runs.iter().all(|r| r.status == "ok" && r.version == status["version"].as_str().unwrap()));
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).stderr(Stdio::null()).status();
    }
}

#[test]
fn run_refuses_sources_with_errors_and_bad_addresses() {
    let out =
        vigil().args(["run", "tests/fixtures/check/fail/e0202_unknown_stage_ref.vigil", "--state", "/tmp/vigil-never"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("E0202"));
    let out = vigil().args(["run", "pipelines/demo.vigil", "--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

const NAB: &str = "tests/fixtures/data/ec2_request_latency_system_failure.csv";

#[test]
fn replay_writes_one_row_per_input_row_in_order() {
    let dir = TempDir::new("replay");
    let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(NAB);
    assert!(input.exists(), "the NAB data is missing: {}", input.display());
    let output = dir.join("scores.csv");
    let out = vigil()
        .args(["replay", "pipelines/nab.vigil", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let inp = std::fs::read_to_string(&input).unwrap();
    let res = std::fs::read_to_string(&output).unwrap();
    let (inl, outl): (Vec<&str>, Vec<&str>) = (inp.lines().collect(), res.lines().collect());
    assert_eq!(outl[0], "timestamp,value,anomaly_score");
    assert_eq!(inl.len(), outl.len());
    let mut anomalous = 0;
    for (a, b) in inl[1..].iter().zip(&outl[1..]) {
        let (prefix, score) = b.rsplit_once(',').unwrap();
        assert_eq!(*a, prefix, "rows keep their text and order");
        let s: f64 = score.parse().unwrap();
        assert!((0.0..=1.0).contains(&s));
        anomalous += (s >= 0.5) as usize;
    }
    assert!(anomalous > 0 && anomalous < inl.len() / 10, "{anomalous} anomalous rows");
    // Causal: replaying a prefix gives the same scores for that prefix.
    let prefix = dir.join("prefix.csv");
    std::fs::write(&prefix, inl[..2001].join("\n") + "\n").unwrap();
    let out2 = dir.join("prefix-scores.csv");
    assert!(vigil()
        .args(["replay", "pipelines/nab.vigil", "--input", prefix.to_str().unwrap(), "--output", out2.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let res2 = std::fs::read_to_string(&out2).unwrap();
    assert_eq!(res2.lines().collect::<Vec<_>>(), outl[..2001].to_vec(), "a point's score depends only on earlier points");
}

#[test]
fn replay_bad_rows_get_a_row_each_and_are_counted() {
    let dir = TempDir::new("replay-bad");
    let input = dir.join("bad.csv");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..100 {
        csv.push_str(&format!("2024-01-01 {:02}:{:02}:00,{}\n", i / 60, i % 60, 10 + i % 3));
    }
    csv.push_str("garbage\n2024-01-01 02:00:00,abc\n2024-01-01 02:01:00,NaN\n2024-01-01 02:02:00,1e308\n2024-01-01 01:00:00,5\n2024-01-01 02:02:00,7\n,\n2024-01-01 02:03:00,-inf\n");
    std::fs::write(&input, &csv).unwrap();
    let output = dir.join("out.csv");
    let out = vigil()
        .args(["replay", "benches/replay.vigil", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let res = std::fs::read_to_string(&output).unwrap();
    assert_eq!(res.lines().count(), csv.lines().count());
    assert!(
        stderr.contains("3 malformed")
            && stderr.contains("2 non-finite")
            && stderr.contains("1 out of order")
            && stderr.contains("1 duplicate"),
        "{stderr}"
    );
    // The huge but finite value is scored, and scores stay in [0, 1].
    let huge = res.lines().find(|l| l.starts_with("2024-01-01 02:02:00,1e308")).unwrap();
    assert_eq!(huge.rsplit(',').next().unwrap(), "1.000000");
    assert!(res.lines().skip(1).all(|l| l.rsplit(',').next().unwrap().parse::<f64>().is_ok_and(|s| (0.0..=1.0).contains(&s))));
}

#[test]
fn replay_usage_errors() {
    let dir = TempDir::new("replay-usage");
    let out = vigil()
        .args(["replay", "pipelines/nab.vigil", "--input", "no/such.csv", "--output", dir.join("o.csv").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such.csv"));
    let wrong = dir.join("wrong.csv");
    std::fs::write(&wrong, "time,val\n1,2\n").unwrap();
    let out = vigil()
        .args(["replay", "pipelines/nab.vigil", "--input", wrong.to_str().unwrap(), "--output", dir.join("o.csv").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timestamp,value"));
    let out = vigil()
        .args([
            "replay",
            "pipelines/nab.vigil",
            "--pipeline",
            "nope",
            "--input",
            wrong.to_str().unwrap(),
            "--output",
            dir.join("o.csv").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pipeline `nope`"));
}

#[test]
fn a_broken_test_file_does_not_keep_the_pipelines_from_running() {
    let dir = TempDir::new("run-broken-test");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.vigil"), dir.join("demo.vigil")).unwrap();
    std::fs::write(dir.join("demo.test.vigil"), "test t for demo {\n  given nope = points([])\n  expect count(console.opened) == 0\n}\n")
        .unwrap();
    // `vigil check` reports the test...
    let out = vigil().args(["check", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown stage `nope`"));
    // ...and `vigil run` runs the pipeline anyway.
    let log = dir.join("stderr.log");
    let (child, port) = spawn_engine(
        vigil()
            .args(["run", dir.path().to_str().unwrap(), "--state", dir.join("state").to_str().unwrap(), "--no-watch"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
        dir.path(),
        Some(&log),
    );
    let _guard = KillOnDrop(child.id());
    let status: serde_json::Value = serde_json::from_str(&http_get(port, "/api/v1/status").unwrap().1).unwrap();
    assert_eq!(status["pipelines"][0]["name"], "demo");
}
