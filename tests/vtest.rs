//! `vigil test`: the pipelines' own tests pass; failures name the expectation's position
//! and the values found; JUnit output for CI; compile errors in tests are diagnostics.

mod common;

use std::process::Command;

use common::TempDir;

fn vigil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil")).args(args).env("NO_COLOR", "1").output().unwrap()
}

#[test]
fn the_pipelines_tests_pass() {
    let o = vigil(&["test", "pipelines"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("test demo::spike_opens_and_resolves_one_incident ... ok"), "{out}");
    assert!(out.contains("test result: ok."), "{out}");
    // Every pipeline with sources the tests can replace has tests of its own.
    for p in ["demo", "nab", "node_cpu", "log_error_rate", "alertmanager_ingest", "log_templates"] {
        assert!(out.contains(&format!("test {p}::")), "{p} has no tests: {out}");
    }
}

#[test]
fn the_stdlib_stages_tests_pass() {
    let o = vigil(&["test", "tests/stdlib"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("test stdlib_tour::learned_detectors_find_the_spike ... ok"), "{out}");
    assert!(out.contains("test stdlib_logs::bursts_and_new_messages ... ok"), "{out}");
}

/// A copy of the demo with tests of its own.
fn demo_with(tests: &str) -> TempDir {
    let dir = TempDir::new("vtest");
    std::fs::copy("pipelines/demo.vigil", dir.join("demo.vigil")).unwrap();
    std::fs::create_dir_all(dir.join("fixtures")).unwrap();
    std::fs::copy("pipelines/fixtures/demo_spike.csv", dir.join("fixtures/demo_spike.csv")).unwrap();
    std::fs::write(dir.join("demo.test.vigil"), tests).unwrap();
    dir
}

#[test]
fn failures_show_the_position_and_the_values_and_exit_1() {
    let dir = demo_with(
        "test wrong for demo {\n  given raw = csv(\"fixtures/demo_spike.csv\")\n  expect count(console.opened) == 2\n  expect count(console.resolved) == 1\n}\n\
         test right for demo {\n  given raw = csv(\"fixtures/demo_spike.csv\")\n  expect console.notifications == [\"firing\", \"resolved\"]\n}\n",
    );
    let o = vigil(&["test", dir.path().to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("test demo::wrong ... FAILED") && out.contains("test demo::right ... ok"), "{out}");
    assert!(out.contains("demo.test.vigil:3:10: expected `count(console.opened) == 2`"), "{out}");
    assert!(out.contains("left: 1") && out.contains("right: 2"), "{out}");
    assert!(!out.contains("demo.test.vigil:4:10"), "the passing expectation is not reported: {out}");
    assert!(out.contains("1 passed; 1 failed"), "{out}");

    // JUnit for CI systems.
    let o = vigil(&["test", dir.path().to_str().unwrap(), "--format", "junit"]);
    let xml = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1));
    assert!(xml.starts_with("<?xml") && xml.contains("<testsuites name=\"vigil\" tests=\"2\" failures=\"1\""), "{xml}");
    assert!(xml.contains("<testcase classname=\"demo\" name=\"wrong\"") && xml.contains("<failure message="), "{xml}");

    // A pipeline file brings its tests: `vigil test demo.vigil`; --filter picks by name.
    let o = vigil(&["test", dir.join("demo.vigil").to_str().unwrap(), "--filter", "right"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("running 1 test\n"), "{out}");
}

#[test]
fn bad_tests_are_diagnostics_at_check_time() {
    let dir = demo_with(
        "test t for demo {\n  given raw = csv(\"fixtures/missing.csv\")\n  expect max(scores.scor) > 0.5\n  expect count(consol.opened) == 1\n}\n",
    );
    for cmd in ["check", "test"] {
        let o = vigil(&[cmd, dir.path().to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("[E0702]") && err.contains("cannot read"), "{err}");
        assert!(err.contains("[E0704]") && err.contains("did you mean `score`?"), "{err}");
        assert!(err.contains("[E0202]") && err.contains("did you mean `console`?"), "{err}");
        assert!(err.contains("demo.test.vigil:2:19"), "positions: {err}");
    }
    // Each of these tests is refused at check time (exit 1); the diagnostics.
    let refused = |test: &str| {
        std::fs::write(dir.join("demo.test.vigil"), test).unwrap();
        let o = vigil(&["test", dir.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{test}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // A fixture of the wrong kind for the stage.
    let err = refused("test t for demo {\n  given raw = events(\"fixtures/demo_spike.csv\")\n  expect count(console.opened) == 0\n}\n");
    assert!(err.contains("[E0702]") && err.contains("this fixture is not Series"), "{err}");
    // A fixture with a bad row names the row.
    std::fs::write(dir.join("fixtures/bad.csv"), "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:00:01,NaN\n").unwrap();
    let err = refused("test t for demo {\n  given raw = csv(\"fixtures/bad.csv\")\n  expect count(console.opened) == 0\n}\n");
    assert!(err.contains("row 3: the value is not a finite number"), "{err}");
    // Scores given to a predict stage must be scores; a respond stage takes no fixture.
    let err = refused(
        "test t for demo {\n  given scores = points([[\"2024-01-01 00:00:00\", 1.5]])\n  given console = points([[0, 1]])\n  expect count(console.opened) == 0\n}\n",
    );
    assert!(err.contains("point 1: the score 1.5 is outside [0, 1]"), "{err}");
    assert!(err.contains("`console` yields Incidents, and fixtures are Series, Events or Scores"), "{err}");
    // A stage upstream of a given one does not run: reading it is an error, not an empty
    // list that any `count(...) == 0` would pass on.
    let err = refused("test t for demo {\n  given scores = points([[\"2024-01-01 00:00:00\", 0.5]])\n  expect count(raw.value) == 0\n}\n");
    assert!(err.contains("[E0704]") && err.contains("`raw` does not run in this test"), "{err}");
}
