//! The log path end to end, with the real binary: a log file read by `logs.file`, mined by
//! `templates`, counted by `aggregate`, scored and responded to; template ids kept across
//! a restart; and bad input (invalid UTF-8, NUL bytes, a 10 MB line, a 10 000-token
//! line, truncation, deletion and recreation, the template cap).

mod common;

use std::io::Write;
use std::time::Duration;

use common::{http, http_get, wait_for, Engine, TempDir};

const TOKEN: &str = "logs-e2e-token";
const HEADER: &str = "<Date> <Time> <Level> <Component>: <Content>";

fn write(dir: &TempDir, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn append(dir: &TempDir, name: &str, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
    f.write_all(bytes).unwrap();
}

fn line(level: &str, component: &str, msg: &str) -> String {
    format!("2026-12-02 10:00:00 {level} {component}: {msg}\n")
}

/// The value of a metric line that contains every one of `parts`.
fn metric(port: u16, parts: &[&str]) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics")?;
    body.lines().filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p))).find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The first incident whose template label contains `text`.
fn incident_with(e: &Engine, text: &str) -> serde_json::Value {
    incident_of(e, "", text)
}

/// The first incident of a stage (any when empty) whose template label contains `text`.
fn incident_of(e: &Engine, stage: &str, text: &str) -> serde_json::Value {
    wait_for(&format!("an incident for `{text}`"), Duration::from_secs(60), || {
        e.incidents()
            .into_iter()
            .find(|i| (stage.is_empty() || i["stage"] == stage) && i["labels"]["template"].as_str().is_some_and(|t| t.contains(text)))
    })
}

#[test]
fn a_burst_of_one_message_and_a_new_message_become_incidents_with_their_template() {
    let dir = TempDir::new("logs-e2e-burst");
    let mut initial = String::new();
    for i in 0..5 {
        initial.push_str(&line("INFO", "db", &format!("connection from 10.0.0.{i} closed after {} ms", 10 + i)));
    }
    write(&dir, "app.log", &initial);
    write(
        &dir,
        "p.vigil",
        &format!(
            r#"pipeline p {{
  every 200ms
  collect lines = logs.file(path: "app.log", header: "{HEADER}", continuation: "^\\s", continuation_wait: 100ms, start_at: "beginning")
  preprocess tpl = templates(lines)
  preprocess counts = aggregate(tpl, by: ["template_id", "template"], op: "count")
  predict hot = threshold(counts, above: 20.0)
  predict fresh = new_templates(tpl, after: 2s)
  respond burst = log(hot, dedup: "burst/{{{{ labels.template_id }}}}", message: "{{{{ incident.value }}}} of {{{{ labels.template }}}}")
  respond new_message = log(fresh, dedup: "new/{{{{ labels.template_id }}}}", message: "new: {{{{ labels.template }}}} e.g. {{{{ labels.sample }}}}")
}}
"#
        ),
    );
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    wait_for("the first lines mined", Duration::from_secs(60), || {
        metric(e.port, &["vigil_stage_events_total", "p.tpl", "template_created"]).filter(|v| *v >= 1.0)
    });
    // Known messages only: nothing fires.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(e.incidents().is_empty(), "{:?}", e.incidents());
    // A burst of 30 timeouts in one write, with a stack trace under each (continuation
    // lines belong to their record), and a message never seen before.
    let mut burst = String::new();
    for i in 0..30 {
        burst.push_str(&line("WARN", "db", &format!("timeout talking to db-{} after {} ms", i % 3, 1000 + i)));
        burst.push_str("  at pool.acquire (pool.rs:88)\n  at handler (api.rs:12)\n");
    }
    burst.push_str(&line("ERROR", "db", "connection pool exhausted: 42 requests waiting"));
    append(&dir, "app.log", burst.as_bytes());

    let hot = incident_of(&e, "p.burst", "timeout talking to");
    assert_eq!(hot["status"], "firing");
    assert_eq!(hot["stage"], "p.burst");
    assert_eq!(hot["labels"]["template"], "timeout talking to <*> after <*>", "{hot}");
    assert_eq!(hot["value"], 30.0, "the stack traces are part of their records, not records of their own: {hot}");
    // The incident shows the last lines counted, whole records with their stack traces.
    let samples = hot["samples"].as_array().unwrap_or_else(|| panic!("samples: {hot}"));
    assert_eq!(samples.len(), 3, "{hot}");
    assert!(
        samples.iter().all(|s| s.as_str().unwrap().contains("timeout talking to db-") && s.as_str().unwrap().contains("at pool.acquire")),
        "{hot}"
    );
    // The rendered notification (the `log` channel writes it to the outbox).
    let logged = |text: &str| {
        wait_for(&format!("`{text}` logged"), Duration::from_secs(60), || {
            let outbox = std::fs::read_to_string(dir.join("state/outbox.jsonl")).unwrap_or_default();
            outbox.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|n| n["message"] == text)
        })
    };
    logged("30.0 of timeout talking to <*> after <*>");

    let new = incident_of(&e, "p.new_message", "connection pool");
    assert_eq!(new["labels"]["template"], "connection pool exhausted: <*> requests waiting", "{new}");
    assert_eq!(new["labels"]["sample"], "connection pool exhausted: 42 requests waiting", "{new}");
    // The timeouts were new too (after the warm-up): one incident per new template.
    let news: Vec<_> = e.incidents().into_iter().filter(|i| i["stage"] == "p.new_message").collect();
    assert_eq!(news.len(), 2, "{news:?}");
    logged("new: connection pool exhausted: <*> requests waiting e.g. connection pool exhausted: 42 requests waiting");
}

#[test]
fn template_ids_survive_a_restart() {
    let dir = TempDir::new("logs-e2e-restart");
    write(&dir, "app.log", &(line("INFO", "a", "alpha job 1 started") + &line("INFO", "b", "beta job 2 finished")));
    write(
        &dir,
        "p.vigil",
        &format!(
            r#"pipeline p {{
  every 200ms
  collect lines = logs.file(path: "app.log", header: "{HEADER}", start_at: "beginning")
  preprocess tpl = templates(lines)
  preprocess counts = aggregate(tpl, by: ["template_id", "template"], op: "count")
  predict seen = threshold(counts, above: 0.5)
  respond r = log(seen, dedup: "{{{{ labels.template_id }}}}")
}}
"#
        ),
    );
    let mut e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let alpha = incident_with(&e, "alpha job");
    let beta = incident_with(&e, "beta job");
    assert_eq!((alpha["labels"]["template_id"].as_str(), beta["labels"]["template_id"].as_str()), (Some("1"), Some("2")));
    // A few ticks for the snapshot to be saved, then a crash.
    std::thread::sleep(Duration::from_millis(1000));
    e.kill9();
    drop(e);

    // Beta first: a miner starting afresh would give it id 1 and gamma id 2.
    append(&dir, "app.log", (line("INFO", "b", "beta job 4 finished") + &line("INFO", "c", "gamma job 3 queued")).as_bytes());
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let gamma = incident_with(&e, "gamma job");
    assert_eq!(gamma["labels"]["template_id"], "3", "ids go on from where they were: {gamma}");
    let betas: Vec<_> =
        e.incidents().into_iter().filter(|i| i["labels"]["template"].as_str().is_some_and(|t| t.contains("beta"))).collect();
    assert!(betas.iter().all(|b| b["labels"]["template_id"] == "2"), "{betas:?}");
}

#[test]
fn bad_log_input_is_counted_and_reading_goes_on() {
    let dir = TempDir::new("logs-e2e-bad");
    write(&dir, "app.log", "");
    write(
        &dir,
        "p.vigil",
        &format!(
            r#"pipeline p {{
  every 200ms
  collect lines = logs.file(path: "app.log", header: "{HEADER}", start_at: "beginning")
  preprocess tpl = templates(lines, max_templates: 16)
  preprocess counts = aggregate(tpl, by: ["template"], op: "count")
  predict seen = threshold(counts, above: 0.5)
  respond r = log(seen, when: seen.anomalous, dedup: "{{{{ labels.template }}}}")
}}
"#
        ),
    );
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let healthy = || http_get(e.port, "/healthz").is_some_and(|(c, _)| c == 200);

    // Invalid UTF-8 and NUL bytes.
    let mut bytes = line("INFO", "x", "invalid encoding marker").into_bytes();
    bytes.truncate(bytes.len() - 1);
    bytes.extend_from_slice(b" \xff\xfe end\n");
    bytes.extend_from_slice(line("INFO", "x", "nul\0marker here").as_bytes());
    append(&dir, "app.log", &bytes);
    incident_with(&e, "invalid encoding marker");
    incident_with(&e, "marker here");
    wait_for("invalid UTF-8 counted", Duration::from_secs(30), || {
        metric(e.port, &["vigil_skipped_total", "invalid_utf8"]).filter(|v| *v >= 1.0)
    });

    // A 10 MB line and a 10 000-token line: cut to 64 KiB, counted, mined.
    let mut huge = line("INFO", "x", "huge marker ").into_bytes();
    huge.truncate(huge.len() - 1);
    huge.extend_from_slice(&vec![b'a'; 10 << 20]);
    huge.push(b'\n');
    append(&dir, "app.log", &huge);
    let tokens: String = (0..10_000).map(|i| format!("w{} ", i % 7)).collect();
    append(&dir, "app.log", line("INFO", "x", &format!("tokens marker {tokens}")).as_bytes());
    incident_with(&e, "huge marker");
    incident_with(&e, "tokens marker");
    wait_for("the long line counted", Duration::from_secs(30), || {
        metric(e.port, &["vigil_skipped_total", "line_truncated"]).filter(|v| *v >= 1.0)
    });
    assert!(healthy());

    // Truncated while read (copytruncate without a copy), then deleted and recreated.
    std::fs::OpenOptions::new().write(true).truncate(true).open(dir.join("app.log")).unwrap();
    append(&dir, "app.log", line("INFO", "x", "after truncation marker").as_bytes());
    incident_with(&e, "after truncation marker");
    std::fs::remove_file(dir.join("app.log")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(healthy());
    write(&dir, "app.log", &line("INFO", "x", "recreated file marker"));
    incident_with(&e, "recreated file marker");

    // The template cap: 16 live templates, 60 distinct messages.
    let mut many = String::new();
    for i in 0..60u64 {
        // Words without digits, distinct for every (message, place).
        let w = |k: u64| -> String { (0..4).map(|j| (b'a' + ((i * 3 + k) / 26u64.pow(j) % 26) as u8) as char).collect() };
        many.push_str(&line("INFO", "x", &format!("{} {} {}", w(1), w(2), w(3))));
    }
    append(&dir, "app.log", many.as_bytes());
    let evicted = wait_for("evictions counted", Duration::from_secs(30), || {
        metric(e.port, &["vigil_stage_events_total", "p.tpl", "template_evicted"]).filter(|v| *v >= 40.0)
    });
    assert!(evicted <= 60.0 + 10.0, "{evicted}");
    assert!(healthy());
}

fn reload_pipeline(max_templates: u32) -> String {
    format!(
        r#"pipeline p {{
  every 200ms
  collect lines = logs.file(path: "app.log", header: "{HEADER}", start_at: "end")
  collect json = logs.jsonl(path: "app.jsonl", message: "msg", label_fields: ["level"], start_at: "beginning")
  preprocess tpl = templates(lines, max_templates: {max_templates})
  preprocess counts = aggregate(tpl, by: ["template_id", "template"], op: "count")
  predict seen = threshold(counts, above: 0.5)
  respond r = log(seen, dedup: "{{{{ labels.template_id }}}}")
  preprocess jtpl = templates(json)
  preprocess jcounts = aggregate(jtpl, by: ["template_id", "template", "level"], op: "count")
  predict jseen = threshold(jcounts, above: 0.5)
  respond jr = log(jseen, dedup: "json/{{{{ labels.template_id }}}}")
}}
"#
    )
}

#[test]
fn start_at_end_json_logs_and_template_ids_across_a_reload_that_changes_the_stage() {
    let dir = TempDir::new("logs-e2e-reload");
    write(&dir, "app.log", &line("INFO", "a", "old message before the start"));
    write(&dir, "app.jsonl", "{\"msg\": \"json says hello to 10.0.0.1\", \"level\": \"info\"}\nnot json at all\n");
    write(&dir, "p.vigil", &reload_pipeline(100));
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    // JSON lines: the message field is mined, `level` is a label; a line that is not JSON
    // is kept whole and counted.
    let j = incident_of(&e, "p.jr", "json says hello to");
    assert_eq!(j["labels"]["level"], "info", "{j}");
    incident_of(&e, "p.jr", "not json at all");
    wait_for("not_json counted", Duration::from_secs(30), || metric(e.port, &["vigil_skipped_total", "not_json"]).filter(|v| *v >= 1.0));

    // start_at "end": what the file held at the start is not read.
    append(&dir, "app.log", line("INFO", "a", "fresh message after the start").as_bytes());
    let fresh = incident_of(&e, "p.r", "fresh message");
    assert_eq!(fresh["labels"]["template_id"], "1", "{fresh}");
    assert!(e.incidents().iter().all(|i| !i["labels"]["template"].as_str().unwrap_or("").contains("old message")));

    // A reload that changes the templates stage (another cap) carries its templates over.
    std::thread::sleep(Duration::from_millis(600));
    write(&dir, "p.vigil", &reload_pipeline(200));
    let (code, body) = http("POST", e.port, "/api/v1/reload", "", &[("Authorization", &format!("Bearer {TOKEN}"))]).unwrap();
    // The answer comes once the reload is done, and names the stages it rebuilt.
    assert!(code < 300 && body.contains("applied") && body.contains("p.tpl"), "{code} {body}");
    append(&dir, "app.log", line("INFO", "a", "another kind of message entirely").as_bytes());
    let another = incident_of(&e, "p.r", "another kind of message");
    assert_eq!(another["labels"]["template_id"], "2", "the rebuilt stage kept its templates: {another}");
}
