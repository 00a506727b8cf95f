//! Correlation end to end: the real binary, two respond stages whose incidents a
//! `correlate` stage groups into one situation with its origin, one page for it, the
//! situations API and CLI, a restart that keeps the situation, and its closing.

mod common;

use std::time::Duration;

use common::*;

const TOKEN: &str = "corr-token-5";

const PIPELINE: &str = r#"pipeline shop {
  every 200ms
  collect db = csv(path: "db.csv", value_columns: ["latency"], labels: { service: "db" })
  collect api = csv(path: "api.csv", value_columns: ["latency"], labels: { service: "checkout" })
  predict db_slow = threshold(db, above: 500.0)
  predict api_slow = threshold(api, above: 500.0)
  respond db_page = log(db_slow)
  respond api_page = log(api_slow)
  predict situations = correlate(db_page, api_page, window: 2s, by: [], edges: ["checkout -> db"])
  respond oncall = log(situations, message: "{{ incident.status }} situation {{ incident.labels.situation }}")
}
"#;

/// Rows a second apart, the last `end_ago` seconds before now.
fn rows(values: &[f64], end_ago: i64) -> String {
    rows_until_now(values, end_ago, 1000)
}

fn append(dir: &TempDir, file: &str, text: &str) {
    use std::io::Write;
    let path = dir.join(file);
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    if new {
        f.write_all(b"timestamp,latency\n").unwrap();
    }
    f.write_all(text.as_bytes()).unwrap();
}

fn situations(e: &Engine) -> Vec<serde_json::Value> {
    http_get(e.port, "/api/v1/situations").and_then(|(_, b)| serde_json::from_str(&b).ok()).unwrap_or_default()
}

fn oncall(e: &Engine) -> Vec<serde_json::Value> {
    e.incidents().into_iter().filter(|i| i["stage"] == "shop.oncall").collect()
}

#[test]
fn a_cascade_is_one_situation_with_its_origin_paged_once() {
    let dir = TempDir::new("correlate-e2e");
    std::fs::write(dir.join("p.vigil"), PIPELINE).unwrap();
    let mut e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    e.wait_first_tick();
    // The database slows down first; checkout, which depends on it, a second later.
    append(&dir, "db.csv", &rows(&[100.0, 900.0, 900.0], 0));
    append(&dir, "api.csv", &rows(&[100.0, 100.0, 800.0], 0));
    let s = wait_for("one situation of two members", Duration::from_secs(60), || {
        situations(&e).into_iter().find(|s| s["members"].as_array().is_some_and(|m| m.len() == 2))
    });
    assert_eq!(situations(&e).len(), 1, "{:?}", situations(&e));
    assert_eq!(s["status"], "open");
    let origin = s["origin"].as_str().unwrap();
    assert!(origin.contains("db"), "the database is upstream of checkout: {s}");
    let reasons: Vec<&str> = s["members"].as_array().unwrap().iter().map(|m| m["reason"]["rule"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"topology"), "why the second member joined: {s}");
    let id = s["id"].as_str().unwrap().to_owned();
    // One page for the situation.
    let page = wait_for("the situation's incident", Duration::from_secs(60), || oncall(&e).into_iter().next());
    assert_eq!(page["labels"]["situation"], id.as_str(), "{page}");
    let v = e.wait_settled(page["id"].as_str().unwrap(), 1);
    let sent: Vec<&str> = v["notifications"].as_array().unwrap().iter().map(|n| n["transition"].as_str().unwrap()).collect();
    assert_eq!(sent, ["firing"], "{v}");
    let samples: Vec<&str> = v["incident"]["samples"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(samples[0].starts_with("origin: ") && samples[0].contains("db"), "the origin first: {samples:?}");
    // The CLI shows it, with its origin and timeline.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["situations", "show", &id, "--api", &format!("127.0.0.1:{}", e.port)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("origin") && text.contains("joined"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["situations", "show", "sit-nope", "--api", &format!("127.0.0.1:{}", e.port)])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "an unknown situation is an error");

    // The console shows it: the list, and its page with the origin and the members.
    let (code, page_html) = http_get(e.port, "/ui/situations").unwrap();
    assert!(code == 200 && page_html.contains(&id), "{code} {page_html}");
    let (code, page_html) = http_get(e.port, &format!("/ui/situations/{id}")).unwrap();
    assert!(code == 200 && page_html.contains("Probable origin") && page_html.contains("depends along checkout"), "{code} {page_html}");
    assert_eq!(http_get(e.port, "/ui/situations/sit-nope").unwrap().0, 404);

    // A reload that changes the stage keeps the situation.
    std::fs::write(dir.join("p.vigil"), PIPELINE.replace("window: 2s", "window: 3s")).unwrap();
    let (code, body) = http("POST", e.port, "/api/v1/reload", "", &[("Authorization", &format!("Bearer {TOKEN}"))]).unwrap();
    assert_eq!(code, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((r["outcome"].as_str(), r["changed"][0].as_str()), (Some("applied"), Some("shop.situations")), "{r}");
    assert!(situations(&e).iter().any(|s| s["id"] == id.as_str() && s["status"] == "open"), "{:?}", situations(&e));

    // A restart keeps it too.
    e.kill9();
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    wait_for("the situation after the restart", Duration::from_secs(60), || situations(&e).into_iter().find(|s| s["id"] == id.as_str()));

    // Both recover: the situation closes once its window has passed, and its page resolves.
    append(&dir, "db.csv", &rows(&[100.0], -1));
    append(&dir, "api.csv", &rows(&[100.0], -1));
    wait_for("the situation to close", Duration::from_secs(60), || {
        situations(&e).into_iter().find(|s| s["id"] == id.as_str() && s["status"] == "closed")
    });
    let page_id = page["id"].as_str().unwrap();
    wait_for("the page to resolve", Duration::from_secs(60), || (e.incident(page_id)["incident"]["status"] == "resolved").then_some(()));
    let v = e.wait_settled(page_id, 2);
    let sent: Vec<&str> = v["notifications"].as_array().unwrap().iter().map(|n| n["transition"].as_str().unwrap()).collect();
    let count = |t: &str| sent.iter().filter(|s| **s == t).count();
    assert_eq!((count("firing"), count("resolved")), (1, 1), "{v}");
    // Members joining later update the page at most once per five minutes.
    assert!(sent.iter().filter(|s| s.starts_with("updated-")).count() <= 1, "{v}");
    assert_eq!(oncall(&e).len(), 1, "one page for the whole cascade");
}

#[test]
fn a_topology_file_that_does_not_parse_is_refused_with_its_position() {
    let dir = TempDir::new("correlate-bad-topology");
    std::fs::write(dir.join("deps.json"), "{\"edges\": [[\"a\", \"b\"],]}").unwrap();
    std::fs::write(
        dir.join("p.vigil"),
        "pipeline p {\n  every 1s\n  collect raw = synthetic()\n  predict hot = threshold(raw, above: 1000.0)\n  respond r = log(hot)\n  \
         predict s = correlate(r, topology: \"deps.json\")\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir.path())
        .args(["run", "p.vigil", "--state", "state", "--no-watch", "--listen", "127.0.0.1:0"])
        .env("VIGIL_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("deps.json") && err.contains("line 1"), "{err}");
}
