//! Hot reload, as Vector writes its reload tests: start A, change to B, assert what was
//! rebuilt (stage generations), that nothing else was, and that an invalid B leaves A
//! running. The real binary, real files, the real watcher.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN: &str = "test-token-1234";

fn start(dir: &TempDir, extra: &[&str]) -> Running {
    let log = dir.join("stderr.log");
    let (child, port) = spawn_engine(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("run")
            .arg(dir.join("pipelines"))
            .args(["--state", dir.join("state").to_str().unwrap(), "--debounce", "50ms"])
            .args(extra)
            .env("VIGIL_API_TOKEN", TOKEN)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
        dir.path(),
        Some(&log),
    );
    Running { child, port }
}

fn status(port: u16) -> Value {
    serde_json::from_str(&http_get(port, "/api/v1/status").unwrap().1).unwrap()
}

fn generations(s: &Value) -> BTreeMap<String, u64> {
    s["stages"].as_array().unwrap().iter().map(|st| (st["key"].as_str().unwrap().to_owned(), st["generation"].as_u64().unwrap())).collect()
}

/// Waits until a reload after `count` earlier ones is recorded; returns the status.
fn next_reload(port: u16, count: usize) -> Value {
    wait_for("a reload", Duration::from_secs(20), || {
        let s = status(port);
        (s["reloads"].as_array().unwrap().len() > count).then_some(s)
    })
}

fn reloads(port: u16) -> usize {
    status(port)["reloads"].as_array().unwrap().len()
}

fn setup(name: &str, pipeline: &str) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(
        dir.join("pipelines/data.csv"),
        "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,2\n2024-01-01 00:02:00,30\n",
    )
    .unwrap();
    std::fs::write(dir.join("pipelines/p.vigil"), pipeline).unwrap();
    dir
}

const A: &str = r#"pipeline p {
  every 100ms

  collect raw = csv(path: "data.csv", start_at: "beginning")
  predict z = zscore(raw, min_samples: 2)
  respond a = log(z, when: z.score > 0.0)
  respond b = log(z, message: "B {{ incident.key }}")
}
"#;

#[test]
fn an_unrelated_edit_rebuilds_only_that_stage() {
    let dir = setup("reload-unrelated", A);
    let r = start(&dir, &[]);
    let items = |port: u16, stage: &str| -> f64 {
        let (_, m) = http_get(port, "/metrics").unwrap();
        m.lines()
            .find(|l| l.starts_with(&format!("vigil_stage_items_total{{pipeline=\"p\",stage=\"{stage}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    // Stage `a` opens an incident per series on the first rows; wait for it first.
    let outbox = dir.join("state/outbox.jsonl");
    let firing_of_a = || {
        std::fs::read_to_string(&outbox)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"stage\":\"p.a\"") && l.contains("\"status\":\"firing\""))
            .count()
    };
    let diagnose = |port: u16| {
        format!("outbox: {:?}\nmetrics: {}", std::fs::read_to_string(&outbox), http_get(port, "/metrics").map(|m| m.1).unwrap_or_default())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while firing_of_a() == 0 {
        assert!(std::time::Instant::now() < deadline, "stage a never reported its incident\n{}", diagnose(r.port));
        std::thread::sleep(Duration::from_millis(50));
    }
    let before_firing = firing_of_a();
    let before = status(r.port);
    assert_eq!(generations(&before).values().copied().collect::<Vec<_>>(), [1, 1, 1, 1]);
    let n = reloads(r.port);
    std::fs::write(dir.join("pipelines/p.vigil"), A.replace("B {{ incident.key }}", "changed {{ incident.key }}")).unwrap();
    let after = next_reload(r.port, n);
    let last = &after["last_reload"];
    assert_eq!(last["outcome"], "applied");
    assert_eq!(last["changed"], serde_json::json!(["p.b"]));
    assert_eq!(last["added"], serde_json::json!([]));
    let g = generations(&after);
    assert_eq!((g["p.raw"], g["p.z"], g["p.a"], g["p.b"]), (1, 1, 1, 2), "only the edited stage is rebuilt");
    assert_ne!(after["version"], before["version"]);
    // The collect stage kept its cursor: the rows already read are not read again.
    assert_eq!(items(r.port, "p.raw"), 3.0);
    // Open incidents stay open: new matching rows after the reload update stage `a`'s
    // incident. Were `a` rebuilt, it would report the incident firing again.
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("pipelines/data.csv")).unwrap();
    use std::io::Write;
    writeln!(f, "2024-01-01 00:03:00,40\n2024-01-01 00:04:00,50").unwrap();
    drop(f);
    wait_for("the new rows to be scored", Duration::from_secs(30), || (items(r.port, "p.z") >= 5.0).then_some(()));
    // Stage `a` runs after `p.z` in the same tick: once a later tick has finished, that
    // tick has too (a pipeline's ticks run one at a time).
    let ticks = |port: u16| -> f64 {
        let (_, m) = http_get(port, "/metrics").unwrap();
        m.lines()
            .find(|l| l.starts_with("vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let t = ticks(r.port);
    wait_for("a later tick", Duration::from_secs(30), || (ticks(r.port) > t).then_some(()));
    assert_eq!(firing_of_a(), before_firing, "the incident stayed open: no second `firing`\n{}", diagnose(r.port));
}

#[test]
fn an_invalid_edit_keeps_the_old_plan_running() {
    let dir = setup("reload-invalid", A);
    let r = start(&dir, &[]);
    let before = status(r.port);
    let n = reloads(r.port);
    std::fs::write(dir.join("pipelines/p.vigil"), A.replace("zscore(raw", "zscroe(raw")).unwrap();
    let after = next_reload(r.port, n);
    let last = &after["last_reload"];
    assert_eq!(last["outcome"], "rejected");
    let diags = last["diagnostics"].as_array().unwrap();
    assert!(diags.iter().any(|d| d.as_str().unwrap().contains("E0203") && d.as_str().unwrap().contains("p.vigil:5:")), "{diags:?}");
    assert_eq!(after["version"], before["version"], "the running version is unchanged");
    assert_eq!(generations(&after), generations(&before));
    // Still answering and ticking.
    let ticks = |port: u16| -> f64 {
        let (_, m) = http_get(port, "/metrics").unwrap();
        m.lines()
            .find(|l| l.starts_with("vigil_ticks_total{pipeline=\"p\",outcome=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let t0 = ticks(r.port);
    wait_for("more ticks after the rejected reload", Duration::from_secs(10), || (ticks(r.port) > t0 + 2.0).then_some(()));
    let (_, m) = http_get(r.port, "/metrics").unwrap();
    assert!(m.contains("vigil_reloads_total{outcome=\"rejected\"} 1"), "{m}");
}

#[test]
fn a_comment_only_edit_applies_and_rebuilds_nothing() {
    let dir = setup("reload-comment", A);
    let r = start(&dir, &[]);
    let before = status(r.port);
    let n = reloads(r.port);
    std::fs::write(dir.join("pipelines/p.vigil"), format!("// A comment.\n{}", A.replace("  every 100ms\n", "  every 100ms  // ticks\n")))
        .unwrap();
    let after = next_reload(r.port, n);
    let last = &after["last_reload"];
    assert_eq!(last["outcome"], "applied");
    assert_eq!(
        (last["added"].as_array().unwrap().len(), last["changed"].as_array().unwrap().len(), last["removed"].as_array().unwrap().len()),
        (0, 0, 0)
    );
    assert_eq!(generations(&after), generations(&before));
    assert_ne!(after["version"], before["version"]);
}

#[test]
fn a_save_by_rename_over_is_picked_up() {
    let dir = setup("reload-rename", A);
    let r = start(&dir, &[]);
    let n = reloads(r.port);
    let tmp = dir.join("pipelines/.p.vigil.tmp");
    std::fs::write(&tmp, A.replace("min_samples: 2", "min_samples: 3")).unwrap();
    std::fs::rename(&tmp, dir.join("pipelines/p.vigil")).unwrap();
    let after = next_reload(r.port, n);
    assert_eq!(after["last_reload"]["outcome"], "applied");
    assert_eq!(after["last_reload"]["changed"], serde_json::json!(["p.z"]));
    // And the watch still works after the rename: a second save is seen too.
    let n = reloads(r.port);
    std::fs::write(&tmp, A.replace("min_samples: 2", "min_samples: 4")).unwrap();
    std::fs::rename(&tmp, dir.join("pipelines/p.vigil")).unwrap();
    assert_eq!(next_reload(r.port, n)["last_reload"]["changed"], serde_json::json!(["p.z"]));
}

#[test]
fn files_added_and_deleted_start_and_stop_pipelines() {
    let dir = setup("reload-files", A);
    let r = start(&dir, &[]);
    let n = reloads(r.port);
    std::fs::write(
        dir.join("pipelines/q.vigil"),
        "pipeline q {\n  every 1s\n  collect raw = synthetic()\n  predict z = zscore(raw)\n  respond r = log(z)\n}\n",
    )
    .unwrap();
    let after = next_reload(r.port, n);
    let names: Vec<&str> = after["pipelines"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["p", "q"]);
    assert_eq!(after["last_reload"]["added"], serde_json::json!(["q.raw", "q.z", "q.r"]));
    let n = reloads(r.port);
    std::fs::remove_file(dir.join("pipelines/q.vigil")).unwrap();
    let after = next_reload(r.port, n);
    let names: Vec<&str> = after["pipelines"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["p"]);
    assert_eq!(after["last_reload"]["removed"], serde_json::json!(["q.raw", "q.z", "q.r"]));
    assert!(generations(&after).keys().all(|k| k.starts_with("p.")));
}

#[test]
fn a_burst_of_writes_gives_few_reloads_and_never_a_half_written_file() {
    let dir = setup("reload-burst", A);
    let file = dir.join("pipelines/p.vigil");
    // The versions of the 50 complete files, computed as the engine computes them.
    let version = |dir: &TempDir| {
        let options = vigil::compile::CompileOptions { skip_test_files: true, ..Default::default() };
        vigil::compile::compile_with(&[dir.join("pipelines")], &options).unwrap().version
    };
    let contents: Vec<String> = (0..50).map(|i| A.replace("min_samples: 2", &format!("min_samples: {}", i + 2))).collect();
    let mut valid = std::collections::HashSet::new();
    for c in &contents {
        std::fs::write(&file, c).unwrap();
        valid.insert(version(&dir));
    }
    std::fs::write(&file, &contents[0]).unwrap();
    let r = start(&dir, &[]);
    let n = reloads(r.port);
    for c in &contents[1..] {
        std::fs::write(&file, c).unwrap();
    }
    let last_version = version(&dir);
    let s = wait_for("the last version", Duration::from_secs(20), || {
        let s = status(r.port);
        (s["version"] == last_version.as_str()).then_some(s)
    });
    let history = s["reloads"].as_array().unwrap();
    let burst = &history[n..];
    assert!(!burst.is_empty() && burst.len() <= 5, "{} reloads for a burst of 49 writes", burst.len());
    for rl in burst.iter().filter(|r| r["outcome"] == "applied") {
        assert!(valid.contains(rl["version"].as_str().unwrap()), "a version that no complete file has was applied: {rl}");
    }
}

#[test]
fn sighup_and_the_api_reload_too() {
    let dir = setup("reload-api", A);
    let r = start(&dir, &["--no-watch"]);
    std::fs::write(dir.join("pipelines/p.vigil"), A.replace("min_samples: 2", "min_samples: 5")).unwrap();
    // Without the watcher, nothing happens until asked.
    let n = reloads(r.port);
    assert!(Command::new("kill").args(["-HUP", &r.child.id().to_string()]).status().unwrap().success());
    assert_eq!(next_reload(r.port, n)["last_reload"]["changed"], serde_json::json!(["p.z"]));
    std::fs::write(dir.join("pipelines/p.vigil"), A.replace("min_samples: 2", "min_samples: 6")).unwrap();
    let (code, _) = http("POST", r.port, "/api/v1/reload", "", &[]).unwrap();
    assert_eq!(code, 401, "mutating calls need the token");
    let (code, _) = http("POST", r.port, "/api/v1/reload", "", &[("Authorization", "Bearer wrong-token-xyz")]).unwrap();
    assert_eq!(code, 401);
    let (code, body) = http("POST", r.port, "/api/v1/reload", "", &[("Authorization", &format!("Bearer {TOKEN}"))]).unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["outcome"].as_str(), v["changed"].clone()), (Some("applied"), serde_json::json!(["p.z"])));
}

#[test]
fn a_stage_that_cannot_be_built_rolls_back() {
    let dir = setup("reload-rollback", A);
    let r = start(&dir, &[]);
    let before = status(r.port);
    let n = reloads(r.port);
    // Compiles, but cannot be built where it runs: the secret is not set (what the
    // pipeline itself gets wrong, such as a selector that does not parse, `vigil check`
    // refuses, and the reload with it).
    let bad = A.replace(
        "  respond b = log(",
        "  respond hook = webhook(z, url: \"http://127.0.0.1:9/hook\", secret: secret(\"env:VIGIL_RELOAD_TEST_NOT_SET\"))\n  respond b = log(",
    );
    std::fs::write(dir.join("pipelines/p.vigil"), bad).unwrap();
    let after = next_reload(r.port, n);
    let last = &after["last_reload"];
    assert_eq!(last["outcome"], "rolled_back");
    assert!(last["diagnostics"][0].as_str().unwrap().contains("p.hook"), "{last}");
    assert_eq!(after["version"], before["version"]);
    assert_eq!(generations(&after), generations(&before), "nothing was swapped");
}

#[test]
fn a_symlink_swap_is_picked_up() {
    // As deploy tools do: the pipeline file is a link, swapped to point at a new release.
    let dir = setup("reload-symlink", A);
    let releases = dir.join("releases");
    std::fs::create_dir_all(&releases).unwrap();
    std::fs::write(releases.join("v1.vigil"), A).unwrap();
    std::fs::write(releases.join("v2.vigil"), A.replace("min_samples: 2", "min_samples: 7")).unwrap();
    let link = dir.join("pipelines/p.vigil");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(releases.join("v1.vigil"), &link).unwrap();
    let r = start(&dir, &[]);
    let n = reloads(r.port);
    let tmp = dir.join("pipelines/.p.vigil.new");
    std::os::unix::fs::symlink(releases.join("v2.vigil"), &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let after = next_reload(r.port, n);
    assert_eq!(after["last_reload"]["outcome"], "applied");
    assert_eq!(after["last_reload"]["changed"], serde_json::json!(["p.z"]));
}

#[test]
fn polling_works_where_notifications_do_not() {
    let dir = setup("reload-poll", A);
    let r = start(&dir, &["--poll"]);
    let n = reloads(r.port);
    std::fs::write(dir.join("pipelines/p.vigil"), A.replace("min_samples: 2", "min_samples: 8")).unwrap();
    let after = next_reload(r.port, n);
    assert_eq!(after["last_reload"]["changed"], serde_json::json!(["p.z"]));
}

#[test]
fn an_edit_to_a_stdlib_module_reloads_exactly_the_stages_that_use_it() {
    let dir = setup(
        "reload-stdlib",
        "use std.detect.{robust_zscore}\n\npipeline p {\n  every 100ms\n\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  predict z = robust_zscore(raw)\n  predict plain = zscore(raw)\n  respond a = log(z)\n  respond b = log(plain)\n}\n",
    );
    let stdlib = dir.join("stdlib");
    std::fs::create_dir_all(&stdlib).unwrap();
    for m in vigil::stdlib::MODULES {
        std::fs::write(stdlib.join(std::path::Path::new(m.file).file_name().unwrap()), m.text).unwrap();
    }
    let r = start(&dir, &["--stdlib", stdlib.to_str().unwrap()]);
    let before = status(r.port);
    let n = reloads(r.port);
    let detect = stdlib.join("detect.vigil");
    let text = std::fs::read_to_string(&detect).unwrap();
    let edited = text.replacen("threshold: Float = 4.0", "threshold: Float = 4.5", 1);
    assert_ne!(text, edited, "the edit must change robust_zscore's default");
    std::fs::write(&detect, edited).unwrap();
    let after = next_reload(r.port, n);
    assert_eq!(after["last_reload"]["outcome"], "applied");
    assert_eq!(after["last_reload"]["changed"], serde_json::json!(["p.z"]), "only the stage expanded from the edited template");
    let (g0, g1) = (generations(&before), generations(&after));
    assert_eq!((g1["p.z"], g1["p.plain"], g1["p.raw"], g1["p.a"], g1["p.b"]), (g0["p.z"] + 1, 1, 1, 1, 1));
}

/// Issue 13: editing a detector's threshold during a spike must not forget its window. The
/// rebuilt stage starts warm (the engine replays its recent inputs into it), so the open
/// incident stays firing through the reload, resolves once when latency is normal again,
/// and no false incident opens afterwards.
#[test]
fn a_threshold_edit_during_a_spike_keeps_the_incident_open() {
    use std::io::Write;
    let dir = TempDir::new("reload-threshold");
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    let data = dir.join("latency.csv");
    // Minute by minute from 2024-01-01 00:00; normal latency is 100–104 ms.
    let row = |minute: usize, v: f64| format!("2024-01-01 {:02}:{:02}:00,{v}\n", minute / 60, minute % 60);
    let normal = |minute: usize| 100.0 + (minute % 5) as f64;
    let append = |from: usize, to: usize, value: &dyn Fn(usize) -> f64| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&data).unwrap();
        let text: String = (from..to).map(|m| row(m, value(m))).collect();
        f.write_all(text.as_bytes()).unwrap();
    };
    std::fs::write(&data, "timestamp,latency_ms\n").unwrap();
    append(0, 60, &normal);
    let pipeline = |threshold: &str| {
        format!(
            "pipeline p {{\n  every 100ms\n\n  collect raw = csv(path: \"{}\", value_columns: [\"latency_ms\"], start_at: \"beginning\")\n  predict z = zscore(raw, method: \"robust\", window: 6h, threshold: {threshold})\n  respond page = log(z)\n}}\n",
            data.display()
        )
    };
    std::fs::write(dir.join("pipelines/p.vigil"), pipeline("6.0")).unwrap();
    let r = start(&dir, &[]);
    let metric = |name: &str, labels: &str| -> f64 {
        let (_, m) = http_get(r.port, "/metrics").unwrap();
        m.lines().find(|l| l.starts_with(&format!("{name}{{{labels}}}"))).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    };
    let scored = || metric("vigil_stage_items_total", "pipeline=\"p\",stage=\"p.z\"");
    let ticks = || metric("vigil_ticks_total", "pipeline=\"p\",outcome=\"ok\"");
    let incidents = || -> Vec<Value> { serde_json::from_str(&http_get(r.port, "/api/v1/incidents").unwrap().1).unwrap() };
    // Waits until `n` samples are scored and a later tick (which ran the respond stage on
    // them too: a pipeline's ticks run one at a time) has finished.
    let settled = |n: f64| {
        wait_for(&format!("{n} samples scored"), Duration::from_secs(30), || (scored() >= n).then_some(()));
        let t = ticks();
        wait_for("a later tick", Duration::from_secs(30), || (ticks() > t).then_some(()));
    };
    settled(60.0);
    assert!(incidents().is_empty(), "normal latency opens nothing: {:?}", incidents());

    // The spike: an incident opens.
    append(60, 65, &|_| 1000.0);
    let opened = wait_for("the incident to open", Duration::from_secs(30), || incidents().into_iter().find(|i| i["status"] == "firing"));
    let id = opened["id"].as_str().unwrap().to_owned();

    // The threshold is edited while the spike goes on: only the detector is rebuilt.
    let n = reloads(r.port);
    std::fs::write(dir.join("pipelines/p.vigil"), pipeline("8.0")).unwrap();
    let after = next_reload(r.port, n);
    assert_eq!(after["last_reload"]["outcome"], "applied");
    assert_eq!(after["last_reload"]["changed"], serde_json::json!(["p.z"]));
    let g = generations(&after);
    assert_eq!((g["p.raw"], g["p.z"], g["p.page"]), (1, 2, 1), "the detector was rebuilt, nothing else");

    // Still high after the reload: the rebuilt detector scores it against the window it
    // was given back, and the incident stays firing.
    append(65, 70, &|_| 1000.0);
    settled(70.0);
    let now = incidents();
    assert_eq!(now.len(), 1, "one incident: {now:?}");
    assert_eq!(
        (now[0]["id"].as_str(), now[0]["status"].as_str()),
        (Some(id.as_str()), Some("firing")),
        "not resolved by the reload: {now:?}"
    );
    assert!(now[0]["resolved_at"].is_null());
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("warmed up from its recent inputs") && l.contains("p.z")),
        "the new detector was warmed up:\n{log}"
    );

    // Latency back to normal: the incident resolves, once, and nothing new opens.
    append(70, 90, &normal);
    wait_for("the incident to resolve", Duration::from_secs(30), || {
        incidents().into_iter().find(|i| i["id"] == id.as_str() && i["status"] == "resolved")
    });
    settled(90.0);
    let end = incidents();
    assert_eq!(end.len(), 1, "no false incident after the spike: {end:?}");
    assert_eq!(end[0]["status"], "resolved");
}
