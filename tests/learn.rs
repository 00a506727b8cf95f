//! Learning: `vigil eval` scored like NAB on real NAB series, trained models in replays
//! (causal, reproducible, with fallbacks), the model registry across restarts (a real
//! SQLite file and real artifacts), `vigil models`, and the bad inputs of the learning issue.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use vigil::data::{Data, SeriesColumn, SeriesData, SeriesId};
use vigil::runtime::ops::learn::{Background, ModelSet, Policy, Train};
use vigil::runtime::{OpCtx, Operator};
use vigil::store::prelude::*;
use vigil::store::SqliteStore;

fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1");
    c
}

fn eval(args: &[&str]) -> std::process::Output {
    let mut a = vec!["eval", "pipelines/nab.vigil", "--data", "tests/fixtures/nab"];
    a.extend_from_slice(args);
    vigil().args(&a).output().unwrap()
}

#[test]
fn eval_scores_real_nab_series_and_writes_nab_layout_and_plots() {
    let dir = TempDir::new("eval");
    let out = dir.join("out");
    let o = eval(&["--windows", "tests/fixtures/nab/windows.json", "--out", out.to_str().unwrap(), "--plot", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let profiles = report["profiles"].as_array().unwrap();
    assert_eq!(
        profiles.iter().map(|p| p["profile"].as_str().unwrap()).collect::<Vec<_>>(),
        ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    );
    let standard = profiles[0]["score"].as_f64().unwrap();
    // Four labelled windows; the detector finds the jump and the latency failures early.
    assert!(standard > 60.0 && standard <= 100.0, "standard score {standard}");
    let files = report["files"].as_array().unwrap();
    let jumps = files.iter().find(|f| f["file"] == "artificialWithAnomaly/art_daily_jumpsup.csv").unwrap();
    assert_eq!(jumps["detected"], 1, "{jumps}");
    // NAB's layout: one scores CSV per file, one row per input row.
    let csv = out.join("nab/artificialWithAnomaly/nab_art_daily_jumpsup.csv");
    let written = std::fs::read_to_string(&csv).unwrap();
    let input = std::fs::read_to_string("tests/fixtures/nab/artificialWithAnomaly/art_daily_jumpsup.csv").unwrap();
    assert_eq!(written.lines().count(), input.lines().count());
    assert_eq!(written.lines().next(), Some("timestamp,value,anomaly_score"));
    let svg = std::fs::read_to_string(out.join("plots/artificialWithAnomaly/art_daily_jumpsup.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("labelled window") && svg.contains("detection"));
    assert!(out.join("nab_scores.json").exists());
}

#[test]
fn eval_prints_a_table_and_the_three_profiles() {
    let o = eval(&["--windows", "tests/fixtures/nab/windows.json"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in ["realKnownCause/ec2_request_latency_system_failure.csv", "standard", "reward_low_FP_rate", "reward_low_FN_rate", "total"]
    {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn eval_bad_inputs_are_clear() {
    let dir = TempDir::new("eval-bad");
    // A windows file naming a file that does not exist: a warning, the rest is scored.
    let w = dir.join("windows.json");
    let mut labels: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("tests/fixtures/nab/windows.json").unwrap()).unwrap();
    labels["realTweets/nope.csv"] = serde_json::json!([["2015-01-01 00:00:00.000000", "2015-01-02 00:00:00.000000"]]);
    std::fs::write(&w, labels.to_string()).unwrap();
    let o = eval(&["--windows", w.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("names `realTweets/nope.csv`, which is not under"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Malformed windows: exit 2 with the reason.
    for (text, why) in [
        ("[1, 2]", "expected"),
        (r#"{"a.csv": [["x", "y"]]}"#, "is not a timestamp"),
        (r#"{"a.csv": [["2015-01-02", "2015-01-01"]]}"#, "ends before it starts"),
    ] {
        std::fs::write(&w, text).unwrap();
        let o = eval(&["--windows", w.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{text}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // --plot needs somewhere to go; a missing data directory is named.
    let o = eval(&["--windows", "tests/fixtures/nab/windows.json", "--plot"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--plot needs --out"));
    let o = vigil()
        .args(["eval", "pipelines/nab.vigil", "--data", "no/such/dir", "--windows", "tests/fixtures/nab/windows.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/dir"));
}

/// A pipeline that trains on the replayed series and scores with the model, falling back
/// to a robust z-score until the first model exists.
const TRAINED: &str = r#"
pipeline learned {
  collect input = csv(path: "data.csv")
  predict robust = zscore(input, window: 1h, method: "robust")
  train model = KIND {
    min_samples 400
    retrain every 200 samples
  }
  predict scores = model.score(input, history: 200, threshold: 0.99) {
    fallback: robust
  }
}
"#;

fn write_series(path: &Path, n: usize, spike_at: usize) {
    let mut s = String::from("timestamp,value\n");
    for i in 0..n {
        let v = 50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 60.0).sin() + ((i * 7919) % 11) as f64 * 0.2;
        let v = if i == spike_at { v + 40.0 } else { v };
        s.push_str(&format!("{},{v}\n", vigil::time::format_timestamp(i as i64 * 60_000)));
    }
    std::fs::write(path, s).unwrap();
}

fn replay(kind: &str, dir: &TempDir) -> Vec<f64> {
    let src = TRAINED.replace("KIND", kind);
    let out = vigil::compile::compile_str("learned.vigil", &src);
    assert!(!out.diagnostics.has_errors(), "{:?}", out.diagnostics);
    let plan = out.plan.unwrap();
    let mut buf = Vec::new();
    vigil::replay::replay_to(&plan.pipelines[0], dir.path(), &dir.join("data.csv"), &mut buf, "scores").unwrap();
    let (f, _) = vigil::eval::parse_scores("x", &buf);
    f.scores
}

#[test]
fn trained_models_score_causally_reproducibly_and_fall_back_before_training() {
    let dir = TempDir::new("learn-replay");
    write_series(&dir.join("data.csv"), 1500, 1200);
    for kind in [
        "forecaster(input, lookback: 30, hidden: [16], epochs: 15, learning_rate: 0.01)",
        "autoencoder(input, window: 30, hidden: [8], epochs: 15, learning_rate: 0.01)",
        "baseline(input, season: 1h, bucket: 1m)",
    ] {
        let a = replay(kind, &dir);
        assert_eq!(a.len(), 1500, "{kind}");
        assert!(a.iter().all(|s| (0.0..=1.0).contains(s)), "{kind}");
        // Before the first model (400 samples) the fallback (robust z-score) scores.
        assert!(a[100..400].iter().any(|&s| s > 0.0), "{kind}: fallback scores before training");
        // The spike stands out among the model's scores.
        let spike = a[1200];
        let others = a[800..1500].iter().enumerate().filter(|(i, _)| !(399..=430).contains(i)).filter(|(_, &s)| s >= spike).count();
        assert!(spike > 0.95 && others <= 5, "{kind}: spike {spike}, {others} others as high");
        // Seeded: the same replay gives the same scores.
        assert_eq!(a, replay(kind, &dir), "{kind}: reproducible");
        // Causal: the scores of a prefix do not depend on what comes after.
        let prefix = TempDir::new("learn-replay-prefix");
        let full = std::fs::read_to_string(dir.join("data.csv")).unwrap();
        std::fs::write(prefix.join("data.csv"), full.lines().take(1001).collect::<Vec<_>>().join("\n") + "\n").unwrap();
        let p = replay(kind, &prefix);
        assert_eq!(p[..], a[..1000], "{kind}: causal");
    }
}

fn series(from: usize, n: usize) -> Data {
    let mut c = SeriesColumn::new(SeriesId::named("latency"));
    for i in from..from + n {
        c.push(i as i64 * 60_000, 50.0 + 10.0 * (i as f64 * 0.1).sin());
    }
    Data::Series(Arc::new(SeriesData { series: vec![c] }))
}

fn models_of(d: &Data) -> Option<u32> {
    let Data::Model(m) = d else { panic!("not a model") };
    let set: &ModelSet = m;
    set.series.get("latency").and_then(|v| v.last()).map(|f| f.meta.version)
}

fn train_op(store: Arc<dyn Store>, dir: &Path, fingerprint: &str) -> Train {
    let spec = vigil::learn::Spec::Forecaster {
        lookback: 16,
        horizon: 1,
        hidden: vec![8],
        train: vigil::learn::TrainParams { epochs: 5, learning_rate: 0.01, batch_size: 64, seed: 3, huber: 1.0 },
        change: false,
        log: false,
    };
    let policy = Policy { min_samples: 200, ..Policy::default() };
    let bg = Background {
        registry: vigil::learn::registry::Registry::local(dir.join("models"), store),
        handle: tokio::runtime::Handle::current(),
    };
    Train::new(spec, policy, Default::default(), "p.model".into(), fingerprint.into(), "v1".into(), Some(bg))
}

/// Feeds `data` once, then ticks with no data until the stage offers a model (or not).
async fn tick_until(op: &mut Train, data: Data, want: impl Fn(Option<u32>) -> bool) -> Option<u32> {
    let mut ctx = OpCtx::new(0);
    let mut v = models_of(&op.process(&[data], &mut ctx).unwrap());
    let empty = Data::Series(Arc::new(SeriesData::default()));
    for _ in 0..600 {
        if want(v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        v = models_of(&op.process(std::slice::from_ref(&empty), &mut ctx).unwrap());
    }
    panic!("the stage never offered the expected model (last: {v:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_registered_survive_restarts_and_bad_artifacts_retrain() {
    let dir = TempDir::new("learn-registry");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    // Train in the background once 200 samples are in.
    let mut op = train_op(store.clone(), dir.path(), "fp1");
    assert_eq!(tick_until(&mut op, series(0, 100), |v| v.is_none()).await, None, "too few samples");
    assert_eq!(tick_until(&mut op, series(100, 150), |v| v.is_some()).await, Some(1));
    let rows = store.models(Some("p.model")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].active && rows[0].meta.samples >= 200 && rows[0].meta.val_loss.is_some(), "{:?}", rows[0]);
    assert!(Path::new(&rows[0].path).exists(), "the artifact is on disk");
    drop(op);

    // A restart: the model is loaded, not retrained (no new data needed).
    let mut op = train_op(store.clone(), dir.path(), "fp1");
    assert_eq!(tick_until(&mut op, series(250, 1), |v| v.is_some()).await, Some(1));
    assert_eq!(store.models(None).await.unwrap().len(), 1, "no retraining");
    drop(op);

    // Another configuration of the stage (another fingerprint): the old model is not used.
    let mut op = train_op(store.clone(), dir.path(), "fp2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tick_until(&mut op, series(251, 1), |v| v.is_none()).await, None);
    drop(op);

    // A corrupt artifact: logged, and the series trains anew (version 2).
    std::fs::write(&rows[0].path, b"not a burnpack").unwrap();
    let mut op = train_op(store.clone(), dir.path(), "fp1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tick_until(&mut op, series(300, 10), |v| v.is_none()).await, None);
    assert_eq!(tick_until(&mut op, series(310, 200), |v| v.is_some()).await, Some(2));
    drop(op);
    // A missing artifact: the same.
    let rows = store.models(None).await.unwrap();
    std::fs::remove_file(&rows[1].path).unwrap();
    let mut op = train_op(store.clone(), dir.path(), "fp1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tick_until(&mut op, series(600, 1), |v| v.is_none()).await, None);
    drop(op);

    // `vigil models`: list, show, rollback to v1, promote v2 again.
    let state = dir.path().to_str().unwrap();
    let list = vigil().args(["models", "list", "--state", state, "--json"]).output().unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["active"], true);
    let o = vigil().args(["models", "rollback", "p.model", "--state", state]).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("v2 → v1"), "{}", String::from_utf8_lossy(&o.stdout));
    let active: Vec<u32> = store.models(None).await.unwrap().iter().filter(|r| r.active).map(|r| r.meta.version).collect();
    assert_eq!(active, [1]);
    // Nothing older than v1: a state problem (2), not errors in the sources (1).
    let o = vigil().args(["models", "rollback", "p.model", "--state", state]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to roll back"));
    let formatted = vigil().args(["models", "list", "--state", state, "--format", "json"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&formatted.stdout).unwrap().as_array().unwrap().len(), 2);
    let id = rows[1]["id"].as_i64().unwrap().to_string();
    assert!(vigil().args(["models", "promote", &id, "--state", state]).output().unwrap().status.success());
    let show = vigil().args(["models", "show", &id, "--state", state]).output().unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("\"version\": 2"));
    let o = vigil().args(["models", "promote", "999", "--state", state]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no model version with id 999"));
    let o = vigil().args(["models", "list", "--state", dir.join("nothing").to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no state database"));
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metric(port: u16, name: &str, labels: &str) -> Option<f64> {
    let (_, m) = http_get(port, "/metrics")?;
    let prefix = format!("{name}{{{labels}}} ");
    m.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

fn rows(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("{},{}\n", vigil::time::format_timestamp(i as i64 * 60_000), 20.0 + (i % 60) as f64)).collect()
}

fn models_listed(state: &Path) -> Option<Vec<serde_json::Value>> {
    let o = vigil().args(["models", "list", "--json", "--state", state.to_str().unwrap()]).output().ok()?;
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).ok()
}

#[test]
fn the_engine_trains_in_the_background_saves_models_and_reuses_them_after_a_restart() {
    let dir = TempDir::new("learn-run");
    std::fs::write(
        dir.join("learn.vigil"),
        "pipeline learn_run {\n  every 100ms\n  collect raw = csv(path: \"data.csv\", start_at: \"beginning\")\n  train profile = baseline(raw, season: 1h, bucket: 1m) {\n    min_samples 100\n  }\n  predict scores = profile.score(raw, history: 50)\n  respond report = log(scores)\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("data.csv"), format!("timestamp,value\n{}", rows(0, 300))).unwrap();
    let state = dir.join("state");
    let log = dir.join("stderr.log");
    let start = || {
        let (child, port) = spawn_engine(
            vigil()
                .args(["run", dir.join("learn.vigil").to_str().unwrap(), "--state", state.to_str().unwrap(), "--no-watch"])
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap()),
            dir.path(),
            Some(&log),
        );
        (KillOnDrop(child), port)
    };
    let (child, _) = start();
    let models = wait_for("a trained model in the registry", Duration::from_secs(60), || models_listed(&state).filter(|m| !m.is_empty()));
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["meta"]["kind"], "baseline");
    assert!(Path::new(models[0]["path"].as_str().unwrap()).starts_with(state.join("models")));
    drop(child);

    // After a restart the model is reused: 150 new samples (more than min_samples) train
    // nothing new.
    let (_child, port) = start();
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("data.csv")).unwrap();
    std::io::Write::write_all(&mut f, rows(300, 150).as_bytes()).unwrap();
    drop(f);
    wait_for("the new rows scored", Duration::from_secs(60), || {
        metric(port, "vigil_stage_items_total", "pipeline=\"learn_run\",stage=\"learn_run.scores\"").filter(|&n| n >= 150.0)
    });
    assert_eq!(models_listed(&state).unwrap().len(), 1, "no retraining after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_samples_are_skipped_and_counted_and_a_constant_series_trains() {
    let dir = TempDir::new("learn-nan");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let mut op = train_op(store.clone(), dir.path(), "fp-nan");
    let mut c = SeriesColumn::new(SeriesId::named("latency"));
    for i in 0..300i64 {
        c.push(
            i * 60_000,
            match i % 10 {
                3 => f64::NAN,
                7 => f64::INFINITY,
                _ => 42.0,
            },
        );
    }
    let mut ctx = OpCtx::new(0);
    op.process(&[Data::Series(Arc::new(SeriesData { series: vec![c] }))], &mut ctx).unwrap();
    let skipped: u64 = ctx.skipped.iter().filter(|(why, _)| *why == "non-finite value").map(|(_, n)| n).sum();
    assert_eq!(skipped, 60, "every NaN and infinity is skipped and counted");
    // The 240 finite samples of a constant series are enough (200), and train.
    let empty = Data::Series(Arc::new(SeriesData::default()));
    assert_eq!(tick_until(&mut op, empty, |v| v.is_some()).await, Some(1));
    let rows = store.models(Some("p.model")).await.unwrap();
    assert!(rows[0].meta.loss.is_finite(), "{:?}", rows[0].meta);
}
