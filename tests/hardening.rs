//! The engine under hostile or unlucky conditions, end to end with the real binary: slow
//! and idle connections under a small open-file limit, lying `Content-Length`s, webhook
//! authentication, content types and rate limits, command arguments chosen by a webhook's
//! caller, API roles and the Host header, and a remediation interrupted by `kill -9`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

const TOKEN: &str = "hardening-token-42";

fn write(dir: &TempDir, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn metric(port: u16, name: &str) -> f64 {
    let (_, text) = http_get(port, "/metrics").unwrap_or_default();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// A connection that sent half a request header and nothing more.
fn slow_connection(port: u16) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").ok()?;
    Some(s)
}

#[test]
fn slow_connections_beyond_the_open_file_limit_do_not_starve_healthz_or_the_api() {
    let dir = TempDir::new("hard-slow");
    write(&dir, "p.vigil", "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 1)\n  predict s = zscore(raw, window: 5m)\n}\n");
    // 256 open files at most (soft and hard): the engine caps its connections at a third.
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir.path())
        .args([
            "-c",
            "ulimit -n 256 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_vigil"),
            "run",
            "p.vigil",
            "--state",
            "state",
            "--no-watch",
        ])
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    let (mut child, port) = spawn_engine(&mut cmd, dir.path(), Some(&dir.join("stderr.log")));
    // 600 slow clients: more than the file limit allows at once.
    let mut held = Vec::new();
    for _ in 0..600 {
        if let Some(s) = slow_connection(port) {
            held.push(s);
        }
    }
    for _ in 0..5 {
        let (code, body) = http_get(port, "/healthz").expect("/healthz answers under attack");
        assert_eq!(code, 200, "{body}");
        let (code, _) = http_get(port, "/api/v1/status").expect("the API answers under attack");
        assert_eq!(code, 200);
    }
    assert!(metric(port, "vigil_http_connections_shed_total{reason=\"evicted\"}") > 0.0, "slow connections were evicted");
    let open = metric(port, "vigil_http_connections ");
    assert!(open <= 86.0, "the cap holds: {open} open");
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn trickling_headers_idle_keepalives_and_lying_lengths_get_an_answer_or_are_closed() {
    let dir = TempDir::new("hard-timeouts");
    write(&dir, "p.vigil", "pipeline p {\n  on webhook \"/hooks/in\"\n  collect ev = webhook_events()\n}\n");
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &["--http-header-timeout", "1s"]);
    // Half a header: closed after the header timeout.
    let mut s = slow_connection(e.port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let n = s.read_to_end(&mut buf).unwrap_or(0);
    assert!(n == 0 || String::from_utf8_lossy(&buf).contains("408"), "closed: {}", String::from_utf8_lossy(&buf));
    // An idle keep-alive connection after a request: closed too.
    let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "the idle connection is closed");
    // A body announced far larger than the route takes: 413 at once, nothing read.
    for (path, headers) in [
        ("/api/v1/silences", vec![("Authorization", format!("Bearer {TOKEN}")), ("Content-Type", "application/json".to_owned())]),
        ("/hooks/in", vec![("Content-Type", "application/json".to_owned())]),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000000000000\r\n");
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"), "{path}: {}", String::from_utf8_lossy(&buf[..n]));
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn webhooks_need_their_token_or_signature_json_and_stay_within_their_rate() {
    let dir = TempDir::new("hard-hooks");
    write(
        &dir,
        "p.vigil",
        r#"pipeline bearer {
  on webhook "/hooks/bearer"
  collect ev = webhook_events(token: secret("env:HOOK_TOKEN"), rate_limit: 3)
}

pipeline signed {
  on webhook "/hooks/signed"
  collect ev = webhook_events(hmac: secret("env:HOOK_KEY"), signature_header: "X-Hub-Signature-256")
}
"#,
    );
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[("HOOK_TOKEN", "tok-1".into()), ("HOOK_KEY", "key-2".into())], &[]);
    let json = ("Content-Type", "application/json");
    let post = |path: &str, body: &str, headers: &[(&str, &str)]| http("POST", e.port, path, body, headers).unwrap().0;
    assert_eq!(post("/hooks/bearer", "{}", &[json]), 401);
    assert_eq!(post("/hooks/bearer", "{}", &[json, ("Authorization", "Bearer wrong")]), 401);
    assert_eq!(post("/hooks/bearer", "{}", &[("Content-Type", "text/plain"), ("Authorization", "Bearer tok-1")]), 415);
    // The bucket holds 3 requests (refilled at 3/s): once one is accepted, a burst of six
    // goes beyond it.
    wait_for("a request with the token accepted", Duration::from_secs(30), || {
        (post("/hooks/bearer", "{}", &[json, ("Authorization", "Bearer tok-1")]) == 202).then_some(())
    });
    let codes: Vec<u16> = (0..6).map(|_| post("/hooks/bearer", "{}", &[json, ("Authorization", "Bearer tok-1")])).collect();
    assert!(codes.contains(&429), "the rate limit answers 429: {codes:?}");
    assert!(codes.iter().all(|c| *c == 202 || *c == 429), "{codes:?}");
    let body = r#"{"msg": "hi"}"#;
    let sig = format!("sha256={}", hmac_hex(b"key-2", body.as_bytes()));
    assert_eq!(post("/hooks/signed", body, &[json, ("X-Hub-Signature-256", &sig)]), 202);
    assert_eq!(post("/hooks/signed", r#"{"msg": "tampered"}"#, &[json, ("X-Hub-Signature-256", &sig)]), 401);
    assert_eq!(post("/hooks/signed", body, &[json]), 401);
    // A secret that does not resolve fails the start: the path is never left open.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir.path())
        .args(["run", "p.vigil", "--state", "state2", "--no-watch", "--listen", "127.0.0.1:0"])
        .env_remove("HOOK_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOOK_TOKEN"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_webhook_caller_cannot_choose_command_options_or_paths() {
    let dir = TempDir::new("hard-exec-args");
    write(
        &dir,
        "p.vigil",
        r#"pipeline p {
  on webhook "/hooks/am"
  collect events = webhook_events(format: "alertmanager")
  preprocess counts = aggregate(events, by: ["alertname"], op: "count")
  predict hot = threshold(counts, above: 0.5)
  respond fix = exec(hot, command: ["touch", "{{ labels.alertname }}"])
}
"#,
    );
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let alert = |name: &str| {
        format!(
            r#"{{"version":"4","status":"firing","receiver":"v","groupKey":"g","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"x","alerts":[{{"status":"firing","labels":{{"alertname":"{name}"}},"annotations":{{}},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"{name}"}}]}}"#
        )
    };
    for name in ["--help", "../escaped", "web-1"] {
        let (code, body) = http("POST", e.port, "/hooks/am", &alert(name), &[("Content-Type", "application/json")]).unwrap();
        assert_eq!(code, 202, "{body}");
    }
    wait_for("the good command to run", Duration::from_secs(60), || dir.join("web-1").exists().then_some(()));
    let refused = wait_for("both bad commands refused", Duration::from_secs(60), || {
        let notes: Vec<serde_json::Value> = e
            .incidents()
            .iter()
            .map(|i| e.incident(i["id"].as_str().unwrap()))
            .flat_map(|v| v["notifications"].as_array().cloned().unwrap_or_default())
            .filter(|n| n["status"] == "failed")
            .collect();
        (notes.len() >= 2).then_some(notes)
    });
    let errors: Vec<&str> = refused.iter().filter_map(|n| n["last_error"].as_str()).collect();
    assert!(errors.iter().any(|e| e.contains("not run") && e.contains("--help")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("not run") && e.contains("../escaped")), "{errors:?}");
    assert!(!dir.join("--help").exists() && !dir.path().parent().unwrap().join("escaped").exists());
}

#[test]
fn api_roles_host_allowlist_and_the_token_in_the_audit_trail() {
    let dir = TempDir::new("hard-roles");
    write(&dir, "p.vigil", "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 1)\n}\n");
    write(&dir, "tokens", "# name role token\nalice operator alice-secret-1\ngrafana read grafana-secret-2\n");
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &["--api-tokens", "tokens", "--read-auth"]);
    let bearer = |t: &str| format!("Bearer {t}");
    let get = |path: &str, auth: Option<&str>| {
        let h = auth.map(bearer);
        let headers: Vec<(&str, &str)> = h.iter().map(|h| ("Authorization", h.as_str())).collect();
        http("GET", e.port, path, "", &headers).unwrap().0
    };
    assert_eq!(get("/healthz", None), 200, "probes need no token");
    assert_eq!(get("/api/v1/status", None), 401, "--read-auth");
    assert_eq!(get("/metrics", None), 401);
    assert_eq!(get("/api/v1/status", Some("grafana-secret-2")), 200);
    let silence = r#"{"matchers": {"pipeline": "p"}, "duration": "1h"}"#;
    let post = |token: &str| {
        http("POST", e.port, "/api/v1/silences", silence, &[("Authorization", &bearer(token)), ("Content-Type", "application/json")])
            .unwrap()
    };
    assert_eq!(post("grafana-secret-2").0, 403, "a read token cannot mutate");
    let (code, body) = post("alice-secret-1");
    assert_eq!(code, 201, "{body}");
    assert!(body.contains("token alice"), "the change names the token: {body}");
    assert!(!body.contains("alice-secret-1"));
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1.
    let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
    s.write_all(
        b"GET /api/v1/status HTTP/1.1\r\nHost: evil.example:8080\r\nAuthorization: Bearer grafana-secret-2\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 421"), "another Host is refused: {answer}");
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(!log.contains("alice-secret-1") && !log.contains("grafana-secret-2"), "tokens never logged");
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let dir = TempDir::new("hard-listen");
    write(&dir, "p.vigil", "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 1)\n}\n");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir.path())
        .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "0.0.0.0:0"])
        .env_remove("VIGIL_API_TOKEN")
        .env_remove("VIGIL_READ_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--insecure-listen") && err.contains("VIGIL_API_TOKEN"), "{err}");
}

#[test]
fn a_remediation_interrupted_by_kill_9_dies_with_the_engine_and_is_not_run_again() {
    let dir = TempDir::new("hard-exec-crash");
    let now = vigil::time::now_ms();
    let rows: String = (0..20)
        .map(|i| format!("{},{}\n", vigil::time::format_timestamp(now - (20 - i) * 60_000), if i >= 15 { 100 } else { 10 }))
        .collect();
    write(&dir, "data.csv", &format!("timestamp,value\n{rows}"));
    write(
        &dir,
        "p.vigil",
        r#"pipeline p {
  every 200ms
  collect raw = csv(path: "data.csv", start_at: "beginning")
  predict hot = threshold(raw, above: 90.0)
  respond fix = exec(hot, command: ["sh", "-c", "echo $$ >> runs-{{ incident.status }}.log; exec sleep 60"], timeout: 5m)
}
"#,
    );
    let mut e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let pid: i32 = wait_for("the remediation to start", Duration::from_secs(60), || {
        std::fs::read_to_string(dir.join("runs-firing.log")).ok()?.lines().next()?.trim().parse().ok()
    });
    e.kill9();
    wait_for("the remediation to die with the engine", Duration::from_secs(30), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its new parent to reap it.
        (stat.is_empty() || stat.split(") ").nth(1).is_some_and(|r| r.starts_with('Z'))).then_some(())
    });
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let id = e.wait_incident("firing")["id"].as_str().unwrap().to_owned();
    let v = wait_for("the interrupted run to be reported", Duration::from_secs(60), || {
        let v = e.incident(&id);
        v["notifications"].as_array()?.iter().any(|n| n["status"] == "unknown").then_some(v)
    });
    let audit = v["audit"].as_array().unwrap();
    assert!(audit.iter().any(|a| a["event"] == "interrupted" && a["detail"].as_str().unwrap().contains("outcome unknown")), "{v}");
    let runs = std::fs::read_to_string(dir.join("runs-firing.log")).unwrap();
    assert_eq!(runs.lines().count(), 1, "run at most once: {runs}");
}

#[test]
fn a_flood_of_label_values_is_capped_and_idle_series_are_forgotten() {
    let dir = TempDir::new("hard-cardinality");
    write(
        &dir,
        "p.vigil",
        r#"pipeline p {
  on webhook "/hooks/am"
  every 200ms
  collect events = webhook_events(format: "alertmanager", rate_limit: 100000)
  preprocess counts = aggregate(events, by: ["alertname"], op: "count") {
    max_series 50
    series_idle 2s
  }
  predict hot = threshold(counts, above: 0.5)
}
"#,
    );
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let post = |names: std::ops::Range<usize>| {
        let alerts: Vec<String> = names
            .map(|i| format!(r#"{{"status":"firing","labels":{{"alertname":"a{i}"}},"annotations":{{}},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f{i}"}}"#))
            .collect();
        let body = format!(
            r#"{{"version":"4","status":"firing","receiver":"v","groupKey":"g","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"x","alerts":[{}]}}"#,
            alerts.join(",")
        );
        let (code, text) = http("POST", e.port, "/hooks/am", &body, &[("Content-Type", "application/json")]).unwrap();
        assert_eq!(code, 202, "{text}");
    };
    let gauges = |prefix: &str| {
        let (_, text) = http_get(e.port, "/metrics").unwrap();
        text.lines().filter(|l| l.starts_with("vigil_anomaly_score{") && l.contains(prefix)).count()
    };
    post(0..500);
    wait_for("the flood beyond the cap to be counted", Duration::from_secs(30), || {
        (metric(e.port, "vigil_skipped_total{pipeline=\"p\",stage=\"p.counts\",reason=\"series_limit\"}") >= 450.0).then_some(())
    });
    // A tick publishes its skip counts before the next stage's gauges: wait for the tick
    // to end, so that "no gauges" below means forgotten, not "not published yet" (the
    // whole suite on a loaded machine once read 0 in that gap and posted the new series
    // while the cap was still full).
    let ticks = || metric(e.port, "vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}");
    let seen = ticks();
    wait_for("the flood's tick to end", Duration::from_secs(30), || (ticks() > seen).then_some(()));
    // Silent for longer than series_idle: forgotten, with their gauges; new series fit
    // again, sent once.
    wait_for("idle series to be forgotten", Duration::from_secs(30), || (gauges("p.hot") == 0).then_some(()));
    post(1000..1010);
    wait_for("new series to be admitted", Duration::from_secs(30), || (gauges("alertname=\\\"a100") >= 10).then_some(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_api_and_picks_up_a_renewed_certificate() {
    let dir = TempDir::new("hard-tls");
    write(&dir, "p.vigil", "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 1)\n}\n");
    std::fs::create_dir_all(dir.join("old")).unwrap();
    std::fs::create_dir_all(dir.join("new")).unwrap();
    certificates(&dir.join("old"));
    certificates(&dir.join("new"));
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(dir.join("old").join(f), dir.join(f)).unwrap();
    }
    let addr_file = dir.join("vigil.addr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir.path())
        .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "127.0.0.1:0", "--addr-file", "vigil.addr"])
        .args(["--tls-cert", "cert.pem", "--tls-key", "key.pem"])
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let log = dir.join("stderr.log");
    let port = wait_for_child("the engine to listen", Duration::from_secs(60), &mut child, Some(&log), || {
        std::fs::read_to_string(&addr_file).ok()?.trim().parse::<std::net::SocketAddr>().ok().map(|a| a.port())
    });
    let client = |ca: &str| {
        let pem = std::fs::read(dir.join(ca).join("ca.pem")).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let url = format!("https://127.0.0.1:{port}/healthz");
    let old = client("old");
    let mut ok = false;
    for _ in 0..200 {
        if old.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "healthz over TLS: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(client("new").get(&url).send().await.is_err(), "another CA's client does not trust it");
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true), "no plain HTTP on a TLS listener");
    // Renewed on disk (a key first, then its certificate, as tools do): new connections
    // get the new certificate.
    for f in ["key.pem", "cert.pem"] {
        std::fs::copy(dir.join("new").join(f), dir.join(f)).unwrap();
    }
    let new = client("new");
    let mut renewed = false;
    for _ in 0..400 {
        if new.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed, "the renewed certificate is served: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let _ = child.kill();
    let _ = child.wait();
}

/// A webhook receiver that records each request's `X-Vigil-Delivery` as soon as the
/// request is read, then answers after `delay` (while `slow` holds) or at once.
struct SlowReceiver {
    port: u16,
    deliveries: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowReceiver {
    fn start(delay: Duration) -> SlowReceiver {
        use std::io::BufReader;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let deliveries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (d, s) = (deliveries.clone(), slow.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (d, s) = (d.clone(), s.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    while let Some(req) = read_request(&mut r) {
                        let id = req.header("x-vigil-delivery").unwrap_or_default().to_owned();
                        d.lock().unwrap().push(id);
                        if s.load(std::sync::atomic::Ordering::SeqCst) {
                            std::thread::sleep(delay);
                        }
                        let mut w = stream.try_clone().unwrap();
                        if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowReceiver { port, deliveries, slow }
    }
}

#[test]
fn after_kill_9_only_the_sends_in_flight_repeat() {
    let dir = TempDir::new("hard-inflight");
    let rx = SlowReceiver::start(Duration::from_secs(30));
    write(
        &dir,
        "p.vigil",
        &format!(
            r#"pipeline p {{
  on webhook "/hooks/am"
  collect events = webhook_events(format: "alertmanager")
  preprocess counts = aggregate(events, by: ["alertname"], op: "count")
  predict hot = threshold(counts, above: 0.5)
  respond hook = webhook(hot, url: "http://127.0.0.1:{}/h")
}}
"#,
            rx.port
        ),
    );
    let mut e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let alerts: Vec<String> = (0..24)
        .map(|i| format!(r#"{{"status":"firing","labels":{{"alertname":"n{i}"}},"annotations":{{}},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f{i}"}}"#))
        .collect();
    let body = format!(
        r#"{{"version":"4","status":"firing","receiver":"v","groupKey":"g","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"x","alerts":[{}]}}"#,
        alerts.join(",")
    );
    assert_eq!(http("POST", e.port, "/hooks/am", &body, &[("Content-Type", "application/json")]).unwrap().0, 202);
    // Killed while the receiver holds its answers: those sends are in flight.
    wait_for("sends in flight", Duration::from_secs(60), || (rx.deliveries.lock().unwrap().len() >= 10).then_some(()));
    e.kill9();
    let before_restart = rx.deliveries.lock().unwrap().len();
    rx.slow.store(false, std::sync::atomic::Ordering::SeqCst);
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let incidents = wait_for("24 incidents", Duration::from_secs(60), || Some(e.incidents()).filter(|v| v.len() == 24));
    let details: Vec<serde_json::Value> = wait_for("every notification sent", Duration::from_secs(120), || {
        let d: Vec<serde_json::Value> = incidents.iter().map(|i| e.incident(i["id"].as_str().unwrap())).collect();
        d.iter()
            .all(|v| v["notifications"].as_array().is_some_and(|n| !n.is_empty() && n.iter().all(|n| n["status"] == "sent")))
            .then_some(d)
    });
    let interrupted =
        details.iter().flat_map(|v| v["audit"].as_array().cloned().unwrap_or_default()).filter(|a| a["event"] == "interrupted").count();
    let got = rx.deliveries.lock().unwrap().clone();
    let mut counts = std::collections::HashMap::new();
    for id in &got {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    let notes = details.iter().map(|v| v["notifications"].as_array().unwrap().len()).sum::<usize>();
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "in-flight-at-kill: {interrupted} marked in flight, {before_restart} received before the restart, {duplicates} duplicates, {} distinct of {notes} notifications",
        counts.len()
    );
    assert_eq!(counts.len(), notes, "every notification delivered");
    assert!(duplicates <= interrupted, "only sends in flight repeat: {duplicates} duplicates, {interrupted} in flight");
    assert!(interrupted <= 16, "at most the dispatcher's concurrency is in flight: {interrupted}");
}

#[test]
fn a_second_engine_on_the_same_state_directory_is_refused() {
    let dir = TempDir::new("hard-lock");
    write(&dir, "p.vigil", "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 1)\n}\n");
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    assert_eq!(http_get(e.port, "/readyz").unwrap().0, 200);
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir.path())
        .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let pid = e.child.as_ref().unwrap().id();
    assert!(err.contains(&format!("another vigil (pid {pid}) is running")), "{err}");
}
