//! What an operator sees of a running engine: JSON logs, a log line and a counter for every
//! send, and a reload gauge that turns good again when a broken file is restored.

mod common;

use std::time::Duration;

use common::*;

const TOKEN: &str = "obs-token-7";

/// `data.csv` whose last two rows (a minute apart, ending now) are hot, and a pipeline
/// whose respond stage `r` logs them, with `options` after its call (`" {\n ... }"`).
fn hot_pipeline(dir: &TempDir, options: &str) {
    let now = vigil::time::now_ms();
    let rows: String = (0..10)
        .map(|i| format!("{},{}\n", vigil::time::format_timestamp(now - (10 - i) * 60_000), if i >= 8 { 100 } else { 10 }))
        .collect();
    std::fs::write(dir.join("data.csv"), format!("timestamp,value\n{rows}")).unwrap();
    std::fs::write(
        dir.join("p.vigil"),
        format!("pipeline p {{\n  every 200ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  predict hot = threshold(raw, above: 90.0)\n  respond r = log(hot){options}\n}}\n"),
    )
    .unwrap();
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, text) = http_get(port, "/metrics")?;
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn sends_are_logged_and_counted_and_logs_can_be_json() {
    let dir = TempDir::new("obs-sends");
    hot_pipeline(&dir, "");
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &["--log-format", "json"]);
    wait_for("the send to be counted", Duration::from_secs(60), || {
        metric(e.port, "vigil_notifications_total{stage=\"p.r\",channel=\"log\",result=\"sent\"}").filter(|v| *v >= 1.0)
    });
    let log = wait_for("the send's log line", Duration::from_secs(30), || {
        Some(std::fs::read_to_string(dir.join("stderr.log")).ok()?).filter(|l| l.contains("notification sent"))
    });
    let mut saw_send = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "notification sent" {
            saw_send = true;
            let f = &v["fields"];
            assert!(f["incident"].is_string() && f["channel"] == "log" && f["destination"] == "console" && f["attempt"] == 1, "{v}");
        }
    }
    assert!(saw_send);
    // The incidents firing and the outbox, read when /metrics is asked.
    assert_eq!(metric(e.port, "vigil_incidents_firing{pipeline=\"p\"}"), Some(1.0));
    wait_for("an empty outbox", Duration::from_secs(30), || (metric(e.port, "vigil_outbox_pending ")? == 0.0).then_some(()));
    assert_eq!(metric(e.port, "vigil_outbox_oldest_age_seconds "), Some(0.0));
}

#[test]
fn restoring_a_broken_file_makes_the_configuration_good_again() {
    let dir = TempDir::new("obs-reload");
    let good = "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 1)\n}\n";
    std::fs::write(dir.join("p.vigil"), good).unwrap();
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let reload = || {
        let (code, body) = http("POST", e.port, "/api/v1/reload", "", &[("Authorization", &format!("Bearer {TOKEN}"))]).unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert_eq!(metric(e.port, "vigil_config_last_reload_successful "), Some(1.0));
    std::fs::write(dir.join("p.vigil"), "pipeline p {\n  every 1s\n  collect raw = synthetc()\n}\n").unwrap();
    let rejected = reload();
    assert_eq!(rejected["outcome"], "rejected");
    // The diagnostics as data too: code, file, line, column.
    let err = &rejected["errors"][0];
    assert!(err["code"].as_str().is_some_and(|c| c.starts_with('E')) && err["line"] == 3, "{rejected}");
    assert!(err["file"].as_str().is_some_and(|f| f.ends_with("p.vigil")), "{rejected}");
    assert_eq!(metric(e.port, "vigil_config_last_reload_successful "), Some(0.0));
    std::fs::write(dir.join("p.vigil"), good).unwrap();
    assert_eq!(reload()["outcome"], "restored");
    assert_eq!(metric(e.port, "vigil_config_last_reload_successful "), Some(1.0));
    let (_, status) = http_get(e.port, "/api/v1/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["last_reload"]["outcome"], "restored");
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(log.contains("the configuration is good again"), "{log}");
}

#[test]
fn a_silence_with_regex_matchers_mutes_an_incident_already_firing() {
    let dir = TempDir::new("obs-silence");
    hot_pipeline(&dir, " {\n    repeat every 1s\n  }");
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let inc = e.wait_incident("firing");
    let id = inc["id"].as_str().unwrap().to_owned();
    wait_for("a repeat", Duration::from_secs(30), || e.incident(&id)["notifications"].as_array().filter(|n| n.len() >= 2).map(|_| ()));
    // A regex that does not compile is refused with the reason.
    let (code, body) = http("POST", e.port, "/api/v1/silences", r#"{"matchers": ["stage=~(p"], "duration": "1h"}"#, &headers).unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a regular expression"), "{body}");
    let (code, body) =
        http("POST", e.port, "/api/v1/silences", r#"{"matchers": ["stage=~p\\..*", "pipeline!=other"], "duration": "1h"}"#, &headers)
            .unwrap();
    assert_eq!(code, 201, "{body}");
    let sid = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_i64().unwrap();
    let listed = wait_for("the incident shown as silenced", Duration::from_secs(10), || {
        e.incidents().into_iter().find(|i| i["id"] == id.as_str() && i["silenced_by"] == sid)
    });
    assert_eq!(listed["status"], "firing");
    let muted = wait_for("two repeats held back", Duration::from_secs(30), || {
        let v = e.incident(&id);
        let held = v["audit"]
            .as_array()?
            .iter()
            .filter(|a| a["event"] == "silenced" && a["detail"].as_str().is_some_and(|d| d.contains(&format!("silence {sid}"))))
            .count();
        (held >= 2).then_some(v)
    });
    let sent_then = muted["notifications"].as_array().unwrap().len();
    // Ended through DELETE: repeats go out again.
    let (code, _) = http("DELETE", e.port, &format!("/api/v1/silences/{sid}"), "", &headers).unwrap();
    assert_eq!(code, 200);
    wait_for("repeats again", Duration::from_secs(30), || (e.incident(&id)["notifications"].as_array()?.len() > sent_then).then_some(()));
    let (code, body) = http("GET", e.port, "/api/v1/incidents?status=bogus", "", &[]).unwrap();
    assert_eq!(code, 400, "{body}");
}

#[test]
fn an_acknowledgement_reaches_the_channel_once() {
    let dir = TempDir::new("obs-ack");
    hot_pipeline(&dir, "");
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let id = e.wait_incident("firing")["id"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {TOKEN}");
    for _ in 0..2 {
        let (code, body) = http("POST", e.port, &format!("/api/v1/incidents/{id}/ack"), "{}", &[("Authorization", &auth)]).unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let v = wait_for("the acknowledgement sent", Duration::from_secs(30), || {
        let v = e.incident(&id);
        v["notifications"].as_array()?.iter().any(|n| n["transition"] == "acknowledged" && n["status"] == "sent").then_some(v)
    });
    let acks = v["notifications"].as_array().unwrap().iter().filter(|n| n["transition"] == "acknowledged").count();
    let audits = v["audit"].as_array().unwrap().iter().filter(|a| a["event"] == "acknowledged").count();
    assert_eq!((acks, audits), (1, 1), "{v}");
    // The CLI finds the engine through VIGIL_API, given as `--addr-file` writes it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["incidents", "list"])
        .env("VIGIL_API", format!("127.0.0.1:{}", e.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&id) && text.contains("silenced"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let bogus = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["incidents", "list", "--status", "bogus"])
        .env("VIGIL_API", format!("127.0.0.1:{}", e.port))
        .output()
        .unwrap();
    assert_eq!(bogus.status.code(), Some(2), "a bad filter is a usage error");
}

#[test]
fn quiet_keeps_info_lines_out_of_the_log() {
    let dir = TempDir::new("obs-quiet");
    std::fs::write(dir.join("p.vigil"), "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 1)\n}\n").unwrap();
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &["-q"]);
    assert_eq!(http_get(e.port, "/readyz").unwrap().0, 200);
    drop(e);
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(!log.contains("vigil running") && !log.contains("INFO"), "{log}");
}
