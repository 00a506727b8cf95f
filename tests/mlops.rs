//! The MLOps loop against the real binary (#15): verdicts stored and learned from,
//! reports, drift measured and retraining on it, challengers in shadow — and the bad
//! inputs: unknown incidents, wrong verdicts, contradictory verdicts, floods,
//! unauthenticated callers.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const TOKEN: &str = "mlops-token";

fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.env("NO_COLOR", "1");
    c
}

fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    http("POST", port, path, body, &[("Authorization", &format!("Bearer {TOKEN}"))]).expect("the API answers")
}

fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (code, body) = http("GET", port, path, "", &[("Authorization", &format!("Bearer {TOKEN}"))]).expect("the API answers");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn metric_line(port: u16, prefix: &str) -> Option<String> {
    let (_, m) = http_get(port, "/metrics")?;
    m.lines().find(|l| l.starts_with(prefix)).map(str::to_owned)
}

fn models(state: &Path) -> Vec<serde_json::Value> {
    let o = vigil().args(["models", "list", "--json", "--state", state.to_str().unwrap()]).output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

/// Values: `n` samples around `level` (a small repeating wiggle), as a list.
fn flat(n: usize, level: f64) -> Vec<f64> {
    (0..n).map(|i| level + (i % 7) as f64).collect()
}

#[test]
fn verdicts_are_stored_audited_reported_and_bad_ones_refused() {
    let dir = TempDir::new("mlops-feedback");
    std::fs::write(
        dir.join("fb.vigil"),
        "pipeline fb {\n  every 100ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  \
         predict high = threshold(raw, above: 100.0)\n  respond page = log(high)\n}\n",
    )
    .unwrap();
    let mut values = flat(20, 50.0);
    values.extend([200.0; 3]);
    values.extend(flat(20, 50.0));
    values.extend([200.0; 3]);
    values.extend(flat(5, 50.0));
    std::fs::write(dir.join("data.csv"), format!("timestamp,value\n{}", rows_until_now(&values, 1, 60_000))).unwrap();
    let e = Engine::start(&dir, "fb.vigil", TOKEN, &[], &[]);
    let resolved = wait_for("two resolved incidents", Duration::from_secs(60), || {
        let v: Vec<serde_json::Value> = e.incidents().into_iter().filter(|i| i["status"] == "resolved").collect();
        (v.len() == 2).then_some(v)
    });
    let (a, b) = (resolved[1]["id"].as_str().unwrap().to_owned(), resolved[0]["id"].as_str().unwrap().to_owned());
    let series = resolved[0]["series"][0].as_str().unwrap().to_owned();

    // Contradictory verdicts: the last one wins, both are audited.
    assert_eq!(post(e.port, &format!("/api/v1/incidents/{a}/feedback"), r#"{"verdict": "true_positive"}"#).0, 200);
    let (code, body) = post(e.port, &format!("/api/v1/incidents/{a}/feedback"), r#"{"verdict": "false_positive", "note": "batch job"}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(post(e.port, &format!("/api/v1/incidents/{b}/feedback"), r#"{"verdict": "true_positive"}"#).0, 200);
    let shown = e.incident(&a);
    assert_eq!(shown["incident"]["feedback"], "false_positive");
    let trail: Vec<String> = shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "feedback")
        .map(|r| r["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert!(trail[1].contains("replaces true_positive"), "{trail:?}");

    // Bad verdicts.
    let (code, body) = post(e.port, "/api/v1/incidents/nope/feedback", r#"{"verdict": "true_positive"}"#);
    assert_eq!(code, 404, "{body}");
    let (code, body) = post(e.port, &format!("/api/v1/incidents/{a}/feedback"), r#"{"verdict": "maybe"}"#);
    assert_eq!(code, 409);
    assert!(body.contains("true_positive, false_positive, duplicate, missed"), "{body}");
    let (code, body) = post(e.port, &format!("/api/v1/incidents/{a}/feedback"), r#"{"verdict": "missed"}"#);
    assert_eq!(code, 409);
    assert!(body.contains("/api/v1/feedback"), "{body}");
    let unauthenticated = http("POST", e.port, &format!("/api/v1/incidents/{a}/feedback"), r#"{"verdict": "true_positive"}"#, &[]).unwrap();
    assert_eq!(unauthenticated.0, 401);

    // A missed window.
    let now = vigil::time::now_ms();
    let missed =
        serde_json::json!({ "pipeline": "fb", "series": series, "from": now - 3_600_000, "to": now - 1_800_000, "note": "nobody paged" });
    let (code, body) = post(e.port, "/api/v1/feedback", &missed.to_string());
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(e.port, "/api/v1/feedback", r#"{"pipeline": "fb", "series": "x", "from": "yesterday"}"#);
    assert_eq!(code, 400);
    assert!(body.contains("RFC 3339"), "{body}");
    let (code, _) = post(
        e.port,
        "/api/v1/feedback",
        &serde_json::json!({ "pipeline": "fb", "series": series, "from": now, "to": now - 1 }).to_string(),
    );
    assert_eq!(code, 400);
    let all = get_json(e.port, "/api/v1/feedback");
    let verdicts: Vec<&str> = all.as_array().unwrap().iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["true_positive", "false_positive", "true_positive", "missed"]);

    // The report: precision from the newest verdicts, recall with the missed window.
    let report = get_json(e.port, "/api/v1/report?since=7d");
    let stage = &report["stages"][0];
    assert_eq!(stage["stage"], "fb.page");
    assert_eq!(stage["incidents"], 2);
    assert_eq!(stage["precision"], 0.5);
    assert!(stage["mttr_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["pipelines"][0]["recall"], 0.5);
    assert_eq!(report["pipelines"][0]["missed"], 1);
    let (code, body) = http("GET", e.port, "/api/v1/report?since=soon", "", &[]).unwrap();
    assert_eq!(code, 400, "{body}");
    assert_eq!(metric_line(e.port, "vigil_report_precision{pipeline=\"fb\",stage=\"fb.page\"}").unwrap().rsplit(' ').next(), Some("0.5"));
    let api = format!("http://127.0.0.1:{}", e.port);
    let out = vigil().args(["report", "--since", "7d", "--api", &api]).env("VIGIL_API_TOKEN", TOKEN).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("fb.page") && text.contains("50%"), "{text}");
    let out = vigil().args(["report", "--since", "a while", "--api", &api]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));

    // The CLI gives verdicts too.
    let out = vigil()
        .args(["incidents", "feedback", &b, "--verdict", "duplicate", "--api", &api])
        .env("VIGIL_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(e.incident(&b)["incident"]["feedback"], "duplicate");

    // A flood is cut off at 60 verdicts a minute per token.
    let mut refused = 0;
    for _ in 0..70 {
        if post(e.port, &format!("/api/v1/incidents/{b}/feedback"), r#"{"verdict": "true_positive", "by": "someone else each time"}"#).0
            == 429
        {
            refused += 1;
        }
    }
    assert!(refused >= 10, "only {refused} of 70 verdicts were refused");
    // The verdicts survive a restart.
    drop(e);
    let e = Engine::start(&dir, "fb.vigil", TOKEN, &[], &[]);
    let all = get_json(e.port, "/api/v1/feedback");
    assert!(all.as_array().unwrap().len() >= 60, "{}", all.as_array().unwrap().len());
}

#[test]
fn training_learns_from_verdicts_and_a_later_verdict_changes_what_it_learns() {
    let dir = TempDir::new("mlops-learn");
    std::fs::write(
        dir.join("lf.vigil"),
        "pipeline lf {\n  every 100ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  \
         train profile = baseline(raw, season: 1h, bucket: 5m) {\n    min_samples 100\n    retrain every 100 samples\n  }\n  \
         predict high = threshold(raw, above: 100.0)\n  predict scores = profile.score(raw, history: 50)\n  \
         respond page = log(high)\n  respond model_page = log(scores)\n}\n",
    )
    .unwrap();
    // 400 minutes of data ending now, a spike at rows 60–62; the rest is written later.
    let mut values = flat(60, 50.0);
    values.extend([200.0; 3]);
    values.extend(flat(337, 50.0));
    let all_rows = rows_until_now(&values, 1, 60_000);
    let lines: Vec<&str> = all_rows.lines().collect();
    let data = dir.join("data.csv");
    std::fs::write(&data, format!("timestamp,value\n{}\n", lines[..150].join("\n"))).unwrap();
    let e = Engine::start(&dir, "lf.vigil", TOKEN, &[], &[]);
    let state = dir.join("state");
    let incident = e.wait_incident("resolved");
    let id = incident["id"].as_str().unwrap();
    wait_for("the first version", Duration::from_secs(60), || (!models(&state).is_empty()).then_some(()));
    assert_eq!(post(e.port, &format!("/api/v1/incidents/{id}/feedback"), r#"{"verdict": "false_positive"}"#).0, 200);
    append(&data, &format!("{}\n", lines[150..260].join("\n")));
    let v2 = wait_for("a version trained after the verdict", Duration::from_secs(60), || {
        models(&state).into_iter().find(|m| m["meta"]["version"] == 2)
    });
    assert!(v2["meta"]["feedback_normal"].as_u64().unwrap() >= 3, "{v2}");
    assert_eq!(v2["meta"]["feedback_excluded"], 0);
    assert!(v2["meta"]["summary"]["quantiles"].as_array().is_some_and(|q| q.len() == 11), "{v2}");

    // On-call changes their mind: the spike was real. The next version leaves it out.
    assert_eq!(post(e.port, &format!("/api/v1/incidents/{id}/feedback"), r#"{"verdict": "true_positive"}"#).0, 200);
    append(&data, &format!("{}\n", lines[260..].join("\n")));
    let v3 = wait_for("a version trained after the second verdict", Duration::from_secs(60), || {
        models(&state).into_iter().find(|m| m["meta"]["version"] == 3)
    });
    assert!(v3["meta"]["feedback_excluded"].as_u64().unwrap() >= 3, "{v3}");
    assert_eq!(v3["meta"]["feedback_normal"], 0);
}

#[test]
fn drift_is_measured_exposed_as_scores_and_triggers_retraining_on_the_new_regime() {
    let dir = TempDir::new("mlops-drift");
    std::fs::write(
        dir.join("drift.vigil"),
        "pipeline drifty {\n  every 100ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  \
         train profile = baseline(raw, season: 1h, bucket: 5m) {\n    min_samples 300\n    retrain when drift > 0.5\n  }\n  \
         predict moved = profile.drift(threshold: 0.5)\n  respond drift_page = log(moved)\n}\n",
    )
    .unwrap();
    let mut values = flat(300, 20.0);
    values.extend(flat(600, 80.0));
    let all_rows = rows_until_now(&values, 1, 60_000);
    let lines: Vec<&str> = all_rows.lines().collect();
    let data = dir.join("data.csv");
    std::fs::write(&data, format!("timestamp,value\n{}\n", lines[..300].join("\n"))).unwrap();
    let e = Engine::start(&dir, "drift.vigil", TOKEN, &[], &[]);
    let state = dir.join("state");
    wait_for("the first version", Duration::from_secs(60), || (!models(&state).is_empty()).then_some(()));
    append(&data, &format!("{}\n", lines[300..].join("\n")));
    let drift = wait_for("the drift gauge", Duration::from_secs(60), || metric_line(e.port, "vigil_model_drift{stage=\"drifty.profile\""));
    let v: f64 = drift.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v.is_finite() && v >= 0.0, "{drift}");
    // Drift is a stage output a respond stage pages on (the incident may have resolved
    // already: after the retrain the drift is gone).
    let incident = wait_for("a drift incident", Duration::from_secs(60), || e.incidents().into_iter().next());
    assert_eq!(incident["stage"], "drifty.drift_page");
    // The drift retrain learns the new regime only: its data starts after the shift.
    let v2 =
        wait_for("a version trained on drift", Duration::from_secs(60), || models(&state).into_iter().find(|m| m["meta"]["version"] == 2));
    let shift = vigil::time::parse_timestamp(lines[300].split(',').next().unwrap()).unwrap();
    assert!(v2["meta"]["data_from"].as_i64().unwrap() >= shift, "{v2}");
    assert!(v2["meta"]["summary"]["quantiles"][0].as_f64().unwrap() >= 80.0, "{v2}");
    let events = metric_line(e.port, "vigil_stage_events_total{pipeline=\"drifty\",stage=\"drifty.profile\",event=\"drift_detected\"}");
    assert!(events.is_some(), "drift_detected is counted");
}

#[test]
fn a_retrained_version_runs_in_shadow_is_compared_and_promoted_with_its_figures() {
    let dir = TempDir::new("mlops-shadow");
    std::fs::write(
        dir.join("shadow.vigil"),
        "pipeline shadowy {\n  every 100ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  \
         train profile = baseline(raw, season: 1h, bucket: 5m) {\n    min_samples 100\n    retrain every 100 samples\n    shadow for 30m\n  }\n  \
         predict scores = profile.score(raw)\n  respond page = log(scores)\n}\n",
    )
    .unwrap();
    let values = flat(400, 50.0);
    let all_rows = rows_until_now(&values, 1, 60_000);
    let lines: Vec<&str> = all_rows.lines().collect();
    let data = dir.join("data.csv");
    std::fs::write(&data, format!("timestamp,value\n{}\n", lines[..100].join("\n"))).unwrap();
    let e = Engine::start(&dir, "shadow.vigil", TOKEN, &[], &[]);
    let state = dir.join("state");
    wait_for("the first version", Duration::from_secs(60), || (!models(&state).is_empty()).then_some(()));
    append(&data, &format!("{}\n", lines[100..205].join("\n")));
    // The retrained version waits in shadow: registered, not active.
    let listed = wait_for("a candidate", Duration::from_secs(60), || {
        let m = models(&state);
        m.iter().any(|m| m["meta"]["version"] == 2).then_some(m)
    });
    let (v1, v2) = (&listed[0], &listed[1]);
    assert_eq!((v1["active"].as_bool(), v2["active"].as_bool()), (Some(true), Some(false)), "{listed:?}");
    let candidate = wait_for("the candidate gauge", Duration::from_secs(60), || {
        metric_line(e.port, "vigil_model_candidate{stage=\"shadowy.profile\"").filter(|l| l.ends_with(" 2"))
    });
    assert!(candidate.ends_with(" 2"));
    // Compared on the same period while it runs.
    let (a, c) = (v1["id"].as_i64().unwrap().to_string(), v2["id"].as_i64().unwrap().to_string());
    let cmp = wait_for("a recorded shadow period", Duration::from_secs(60), || {
        let o = vigil().args(["models", "compare", &a, &c, "--json", "--state", state.to_str().unwrap()]).output().ok()?;
        serde_json::from_slice::<serde_json::Value>(&o.stdout).ok()
    });
    assert_eq!(cmp["active"]["version"], 1);
    assert_eq!(cmp["candidate"]["version"], 2);
    let wrong = vigil().args(["models", "compare", &c, &a, "--state", state.to_str().unwrap()]).output().unwrap();
    assert!(!wrong.status.success());
    // After the shadow period (30 minutes of data both versions scored) it is judged: no
    // worse (neither alarmed), so promoted.
    append(&data, &format!("{}\n", lines[205..240].join("\n")));
    // More data keeps coming (the period is judged on points both versions scored).
    let mut next = 240;
    let show = |id: &str| -> serde_json::Value {
        let o = vigil().args(["models", "show", id, "--state", state.to_str().unwrap()]).output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    };
    let promoted = wait_for("the promotion", Duration::from_secs(60), || {
        let audit = show(&c)["audit"].as_array().cloned().unwrap_or_default();
        let found = audit.into_iter().find(|r| r["event"] == "promoted" && r["detail"].as_str().is_some_and(|d| d.starts_with("v2 ")));
        if found.is_none() && next + 5 <= lines.len() {
            append(&data, &format!("{}\n", lines[next..next + 5].join("\n")));
            next += 5;
        }
        found
    });
    assert!(promoted["detail"].as_str().unwrap().contains("unconfirmed"), "{promoted}");
    // The registry says what the engine uses: a version after v1 is active.
    let active = wait_for("the registry to record the promotion", Duration::from_secs(60), || {
        models(&state).into_iter().find(|m| m["active"] == true && m["meta"]["version"].as_u64() >= Some(2))
    });
    assert!(active["meta"]["version"].as_u64().unwrap() >= 2);
    // Rolling back and promoting by hand are audited too, with who did it.
    let out = vigil().args(["models", "rollback", "shadowy.profile", "--state", state.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = vigil().args(["models", "promote", &c, "--state", state.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = vigil().args(["models", "show", &c, "--state", state.to_str().unwrap()]).output().unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let events: Vec<(&str, &str)> =
        shown["audit"].as_array().unwrap().iter().map(|r| (r["event"].as_str().unwrap(), r["detail"].as_str().unwrap())).collect();
    assert!(events.iter().any(|(e, d)| *e == "rolled_back" && d.ends_with("by cli")), "{events:?}");
    assert!(events.iter().any(|(e, d)| *e == "promoted" && d.contains("promoted by cli") && d.contains("in shadow")), "{events:?}");
}

#[test]
fn a_budget_keeps_a_detector_to_its_alarms_per_period() {
    let dir = TempDir::new("mlops-budget");
    std::fs::write(
        dir.join("budget.vigil"),
        "pipeline bud {\n  every 100ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  \
         predict z = zscore(raw, window: 30m, threshold: 3.0, min_samples: 10)\n  \
         predict paged = budget(z, alarms: 2, per: 1h, horizon: 6h)\n  \
         respond everything = log(z)\n  respond page = log(paged)\n}\n",
    )
    .unwrap();
    // Six hours of minutes: a small wiggle, and a spike every 15 minutes of varying height.
    let values: Vec<f64> = (0..360).map(|i| if i % 15 == 7 { 80.0 + ((i * 37) % 50) as f64 } else { 50.0 + (i % 7) as f64 }).collect();
    std::fs::write(dir.join("data.csv"), format!("timestamp,value\n{}", rows_until_now(&values, 1, 60_000))).unwrap();
    let e = Engine::start(&dir, "budget.vigil", TOKEN, &[], &[]);
    let opened = |stage: &str| e.incidents().iter().filter(|i| i["stage"] == stage).count();
    // The detector alone alarms on every spike (24); through the budget, about two an hour
    // once an hour of scores is in (5 hours: 10), never the spikes of the first hour.
    let all = wait_for("the detector's incidents", Duration::from_secs(60), || {
        let n = opened("bud.everything");
        (n >= 20).then_some(n)
    });
    let paged = wait_for("the budget's incidents", Duration::from_secs(60), || {
        let n = opened("bud.page");
        (n > 0).then_some(n)
    });
    assert!(paged <= 12, "the budget let {paged} of {all} alarms through");
    assert!(paged >= 5, "the budget let only {paged} alarms through in five hours");
}
