//! Respond end to end: the real `vigil` binary, a real SMTP server (aiosmtpd), a real
//! Alertmanager, and an HTTP receiver in the test that checks the JSON and signatures of
//! webhooks, Slack and PagerDuty. Faults: the SMTP server down and back, `kill -9` of the
//! engine mid-send, 4xx / 5xx / 429 answers, commands that hang or do not exist,
//! templates that fail, silences, acknowledgements and `--dry-run`.

mod common;

use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const TOKEN: &str = "test-token-0123";

/// Starts the engine; rows staged by [`data`] appear after its first tick, as live rows
/// do (a file already there when a new state starts is read from its end).
fn start_engine(dir: &TempDir, env: &[(&str, String)], args: &[&str]) -> Engine {
    let e = Engine::start(dir, "resp.vigil", TOKEN, env, args);
    let staged = dir.join("data.csv.next");
    if staged.exists() {
        e.wait_first_tick();
        std::fs::rename(staged, dir.join("data.csv")).unwrap();
    }
    e
}

/// A pipeline over `data.csv` whose respond stages are `stages` (reading `hot`).
fn pipeline(dir: &TempDir, stages: &str) {
    std::fs::write(
        dir.join("resp.vigil"),
        format!("pipeline resp {{\n  every 200ms\n  collect raw = csv(path: \"data.csv\")\n  predict hot = threshold(raw, above: 90.0)\n{stages}\n}}\n"),
    )
    .unwrap();
}

/// Rows a minute apart ending now: `normal` at 10, `spike` at 100, `after` at 10.
fn rows(normal: usize, spike: usize, after: usize) -> String {
    let n = normal + spike + after;
    let start = vigil::time::now_ms() - n as i64 * 60_000;
    (0..n)
        .map(|i| {
            let v = if i >= normal && i < normal + spike { 100 } else { 10 };
            format!("{},{v}\n", vigil::time::format_timestamp(start + i as i64 * 60_000))
        })
        .collect()
}

/// Writes `data.csv` (its header, then `body`): staged for [`start_engine`] until the
/// engine runs.
fn data(dir: &TempDir, body: &str) {
    stage(dir, &format!("timestamp,value\n{body}"));
}

fn stage(dir: &TempDir, text: &str) {
    let live = dir.join("data.csv");
    std::fs::write(if live.exists() { live } else { dir.join("data.csv.next") }, text).unwrap();
}

// ---------------------------------------------------------------- SMTP

struct Smtp {
    server: Server,
    maildir: PathBuf,
}

/// aiosmtpd through tests/servers/smtp.py (`extra`: its TLS and authentication options),
/// delivering to a Maildir: on `port`, or on a free port (and on another one if that port
/// is taken before the server binds it).
fn start_smtp_with(port: Option<u16>, extra: &[String]) -> Smtp {
    require("python3", "python3-aiosmtpd");
    let ok = Command::new("/usr/bin/python3").args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    assert!(ok, "aiosmtpd is not installed for /usr/bin/python3. Run the tests with ./test.sh, which installs the Debian package `python3-aiosmtpd`.");
    let dir = TempDir::new("smtp");
    let maildir = dir.join("mail");
    let log = dir.join("smtp.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/smtp.py");
    let command = |port: u16| {
        let mut c = Command::new("/usr/bin/python3");
        c.arg(&script)
            .args(["--port", &port.to_string(), "--maildir", maildir.to_str().unwrap()])
            .args(extra)
            .stdout(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap());
        c
    };
    let ready = |_: u16| std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening on"));
    let (child, port) = match port {
        None => start_on_free_port("the SMTP server", Some(&log), command, ready),
        Some(port) => {
            let mut child = command(port).spawn().expect("starting aiosmtpd");
            wait_for_child("the SMTP server", Duration::from_secs(30), &mut child, Some(&log), || ready(port).then_some(()));
            (child, port)
        }
    };
    Smtp { server: Server { child, port, dir }, maildir }
}

fn start_smtp() -> Smtp {
    start_smtp_with(None, &[])
}

fn mails(maildir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .map(|d| d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
        .unwrap_or_default();
    // The thread's first mail (no In-Reply-To) first.
    out.sort_by_key(|m| m.contains("In-Reply-To"));
    out
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

const EMAIL: &str = r#"  respond mail = email(
    hot,
    to: ["sre@example.com"],
    smtp: secret("env:SMTP_URL"),
    tls: "none",
    subject: "[vigil] {{ incident.status }} {{ incident.key }}",
    body: "value {{ incident.value }} score {{ incident.score }}",
  )"#;

fn check_thread(m: &[String]) {
    assert_eq!(m.len(), 2, "one mail per transition: {m:#?}");
    let (open, resolved) = (&m[0], &m[1]);
    assert!(header(open, "Subject").unwrap().starts_with("[vigil] firing resp/resp.mail/"), "{open}");
    assert!(header(resolved, "Subject").unwrap().starts_with("[vigil] resolved"), "{resolved}");
    let root = header(open, "Message-ID").unwrap().trim();
    assert!(root.ends_with(".firing@vigil>"), "{root}");
    assert_eq!(header(resolved, "In-Reply-To").map(str::trim), Some(root), "one thread per incident");
    assert_eq!(header(resolved, "References").map(str::trim), Some(root));
    assert!(open.contains("text/plain") && open.contains("text/html"), "text and HTML bodies");
    assert!(open.contains("value 100"), "{open}");
}

#[test]
fn email_over_real_smtp_one_thread_per_incident() {
    let dir = TempDir::new("respond-email");
    let smtp = start_smtp();
    pipeline(&dir, EMAIL);
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.server.port))], &[]);
    let inc = e.wait_incident("resolved");
    let v = e.wait_settled(inc["id"].as_str().unwrap(), 2);
    assert!(v["notifications"].as_array().unwrap().iter().all(|n| n["status"] == "sent"), "{v}");
    let m = wait_for("two mails", Duration::from_secs(30), || Some(mails(&smtp.maildir)).filter(|m| m.len() >= 2));
    check_thread(&m);
    // The audit trail answers "why was I paged".
    let events: Vec<&str> = v["audit"].as_array().unwrap().iter().map(|a| a["event"].as_str().unwrap()).collect();
    for want in ["opened", "queued", "sent", "resolved"] {
        assert!(events.contains(&want), "{want} missing from {events:?}");
    }
    // Secrets never show up in the API or the logs.
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(!v.to_string().contains("smtp://") && !stderr.contains("smtp://127.0.0.1"), "the SMTP URL leaked");
}

/// A TLS SMTP server: `mode` is `--starttls` or `--smtps`, with the certificate in
/// `certs`; authentication required as `vigil:s3cret`.
fn start_smtp_tls(mode: &str, certs: &Path) -> Smtp {
    let (cert, key) = (certs.join("cert.pem").display().to_string(), certs.join("key.pem").display().to_string());
    start_smtp_with(None, &[mode.to_owned(), cert, key, "--auth".into(), "vigil:s3cret".into()])
}

#[test]
fn email_over_starttls_and_implicit_tls_with_authentication_and_an_internal_ca() {
    let dir = TempDir::new("respond-email-tls");
    certificates(dir.path());
    let starttls = start_smtp_tls("--starttls", dir.path());
    let smtps = start_smtp_tls("--smtps", dir.path());
    let stage = |name: &str, secret: &str, extra: &str| {
        format!("  respond {name} = email(hot, to: [\"sre@example.com\"], smtp: secret(\"env:{secret}\"), subject: \"{{{{ incident.status }}}} {name}\"{extra})\n")
    };
    pipeline(
        &dir,
        &[
            // Both servers refuse mail before TLS and before authentication.
            stage("starttls", "SMTP_STARTTLS", ", ca: \"ca.pem\""),
            stage("smtps", "SMTP_TLS", ", tls: \"tls\", ca: \"ca.pem\""),
            // The web PKI roots do not know the test CA; a wrong password is refused.
            stage("untrusted", "SMTP_STARTTLS", ""),
            stage("badlogin", "SMTP_BADLOGIN", ", tls: \"tls\", ca: \"ca.pem\""),
        ]
        .concat(),
    );
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(
        &dir,
        &[
            ("SMTP_STARTTLS", format!("smtp://vigil:s3cret@127.0.0.1:{}", starttls.server.port)),
            ("SMTP_TLS", format!("smtps://vigil:s3cret@127.0.0.1:{}", smtps.server.port)),
            ("SMTP_BADLOGIN", format!("smtps://vigil:wrong@127.0.0.1:{}", smtps.server.port)),
        ],
        &[],
    );
    let incidents = wait_for("four resolved incidents", Duration::from_secs(60), || {
        let v = e.incidents();
        (v.iter().filter(|i| i["status"] == "resolved").count() == 4).then_some(v)
    });
    let settled = |stage: &str| {
        let i = incidents.iter().find(|i| i["stage"] == format!("resp.{stage}")).unwrap();
        e.wait_settled(i["id"].as_str().unwrap(), 2)
    };
    for (stage, server) in [("starttls", &starttls), ("smtps", &smtps)] {
        let v = settled(stage);
        assert!(v["notifications"].as_array().unwrap().iter().all(|n| n["status"] == "sent"), "{v}");
        let m = wait_for("two mails", Duration::from_secs(30), || Some(mails(&server.maildir)).filter(|m| m.len() >= 2));
        let subjects: Vec<&str> = m.iter().map(|m| header(m, "Subject").unwrap()).collect();
        assert_eq!(subjects, [format!("firing {stage}"), format!("resolved {stage}")], "only `{stage}` reached this server");
    }
    // Failures a retry cannot mend fail at once, with the reason.
    for (stage, why) in [("untrusted", "certificate"), ("badlogin", "535")] {
        let v = settled(stage);
        for n in v["notifications"].as_array().unwrap() {
            assert_eq!(n["status"], "failed", "{v}");
            assert_eq!(n["attempts"], 1, "not retried: {v}");
            assert!(n["last_error"].as_str().unwrap().contains(why), "{v}");
        }
    }
    // The password never shows in the API or the logs.
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    let api = serde_json::to_string(&e.incidents()).unwrap();
    assert!(!api.contains("s3cret") && !stderr.contains("s3cret") && !stderr.contains("wrong@"), "the SMTP password leaked");
}

#[test]
fn smtp_down_then_back_delivers_every_notification_exactly_once() {
    let dir = TempDir::new("respond-smtp-down");
    let port = free_port(); // nothing listens yet
    pipeline(&dir, EMAIL);
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[("SMTP_URL", format!("smtp://127.0.0.1:{port}"))], &[]);
    let inc = e.wait_incident("resolved");
    let id = inc["id"].as_str().unwrap().to_owned();
    // Both notifications fail and are retried.
    wait_for("a retried notification", Duration::from_secs(30), || {
        e.incident(&id)["audit"].as_array()?.iter().any(|a| a["event"] == "retried").then_some(())
    });
    let smtp = start_smtp_with(Some(port), &[]);
    let v = e.wait_settled(&id, 2);
    assert!(v["notifications"].as_array().unwrap().iter().all(|n| n["status"] == "sent"), "{v}");
    check_thread(&mails(&smtp.maildir));
}

#[test]
fn kill_9_mid_send_delivers_after_the_restart_not_twice() {
    let dir = TempDir::new("respond-kill9");
    // An SMTP server that accepts the connection and then says nothing: the send hangs.
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let stall_port = stall.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in stall.incoming().flatten() {
            let _ = tx.send(());
            held.push(s);
        }
    });
    pipeline(&dir, EMAIL);
    data(&dir, &rows(20, 3, 5));
    let mut e = start_engine(&dir, &[("SMTP_URL", format!("smtp://127.0.0.1:{stall_port}"))], &[]);
    rx.recv_timeout(Duration::from_secs(30)).expect("the engine connects to send");
    e.kill9();
    // Restart against a working server: what was pending is delivered, once.
    let smtp = start_smtp();
    let e = start_engine(&dir, &[("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.server.port))], &[]);
    let inc = e.wait_incident("resolved");
    e.wait_settled(inc["id"].as_str().unwrap(), 2);
    check_thread(&mails(&smtp.maildir));
    assert_eq!(e.incidents().len(), 1, "the incident survived the restart, and was not opened again");
}

// ---------------------------------------------------------------- HTTP receiver

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// Per path, the status codes still to answer.
type Scripts = Arc<Mutex<Vec<(String, VecDeque<u16>)>>>;

/// An HTTP receiver: records every request; answers from a per-path script of status
/// codes (then 200).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: &[(&str, &[u16])]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let scripts: Scripts =
            Arc::new(Mutex::new(script.iter().map(|(p, codes)| (p.to_string(), codes.iter().copied().collect())).collect()));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (g, scripts) = (g.clone(), scripts.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    while let Some(Request { path, headers, body }) = read_request(&mut r) {
                        g.lock().unwrap().push(Received { path: path.clone(), headers, body: String::from_utf8_lossy(&body).into_owned() });
                        let code =
                            scripts.lock().unwrap().iter_mut().find(|(p, _)| *p == path).and_then(|(_, c)| c.pop_front()).unwrap_or(200);
                        let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}");
                        let mut w = stream.try_clone().unwrap();
                        if w.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { port, got }
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

fn header_of<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn webhook_slack_and_pagerduty_formats_signatures_and_retries() {
    let dir = TempDir::new("respond-http");
    let rx = Receiver::start(&[("/hook", &[500]), ("/slack", &[429]), ("/bad", &[400, 400, 400])]);
    let base = format!("http://127.0.0.1:{}", rx.port);
    pipeline(
        &dir,
        &format!(
            r#"  respond hook = webhook(hot, url: "{base}/hook", secret: secret("env:HOOK_KEY"))
  respond chat = slack(hot, url: secret("env:SLACK_URL"))
  respond page = pagerduty(hot, routing_key: secret("env:PD_KEY"), url: "{base}/pd", severity: "critical")
  respond bad = webhook(hot, url: "{base}/bad")"#
        ),
    );
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[("HOOK_KEY", "k3y".into()), ("SLACK_URL", format!("{base}/slack")), ("PD_KEY", "R0UTING".into())], &[]);
    let incidents = wait_for("four resolved incidents", Duration::from_secs(60), || {
        let v = e.incidents();
        (v.iter().filter(|i| i["status"] == "resolved").count() == 4).then_some(v)
    });
    for i in &incidents {
        e.wait_settled(i["id"].as_str().unwrap(), 2);
    }
    // Webhook: 500 retried, then both transitions delivered once, signed.
    let hook = rx.at("/hook");
    assert_eq!(hook.len(), 3, "one failure and two deliveries: {hook:#?}");
    for r in &hook {
        let sig = header_of(r, "x-vigil-signature").unwrap();
        assert_eq!(sig, format!("sha256={}", vigil::respond::channels::sign(b"k3y", r.body.as_bytes())), "HMAC over the body");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["incident"]["id"].is_string() && v["transition"].is_string());
        assert!(header_of(r, "x-vigil-delivery").is_some());
    }
    let transitions: Vec<String> = hook
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["transition"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(transitions.iter().filter(|t| *t == "firing").count(), 2, "firing: failed once, then delivered");
    assert_eq!(transitions.iter().filter(|t| *t == "resolved").count(), 1);
    // Slack: 429 retried; {text, blocks}.
    let slack = rx.at("/slack");
    assert_eq!(slack.len(), 3, "{slack:#?}");
    let v: serde_json::Value = serde_json::from_str(&slack[2].body).unwrap();
    assert!(v["text"].is_string() && v["blocks"].is_array(), "{v}");
    // PagerDuty: trigger and resolve with the same dedup_key.
    let pd: Vec<serde_json::Value> = rx.at("/pd").iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    assert_eq!(pd.len(), 2, "{pd:#?}");
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[1]["event_action"], "resolve");
    assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);
    assert_eq!(pd[0]["routing_key"], "R0UTING");
    assert_eq!(pd[0]["payload"]["severity"], "critical");
    assert!(pd[0]["payload"]["summary"].is_string() && pd[0]["payload"]["source"].is_string() && pd[0]["payload"]["timestamp"].is_string());
    // 400: not retried; recorded as failed.
    assert_eq!(rx.at("/bad").len(), 2, "a 4xx is not retried");
    let bad = incidents.iter().find(|i| i["stage"] == "resp.bad").unwrap();
    let v = e.incident(bad["id"].as_str().unwrap());
    assert!(
        v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "failed" && n["last_error"].as_str().unwrap().contains("HTTP 400")),
        "{v}"
    );
    // The Slack URL and the routing key are secrets: not in the API.
    let all = http_get(e.port, "/api/v1/incidents").unwrap().1;
    assert!(!all.contains("/slack") && !all.contains("R0UTING") && !all.contains("k3y"));
}

#[test]
fn alertmanager_receives_alerts_and_their_resolution() {
    let bin = require("prometheus-alertmanager", "prometheus-alertmanager");
    let am_dir = TempDir::new("alertmanager");
    std::fs::write(am_dir.join("am.yml"), "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n").unwrap();
    let log = am_dir.join("alertmanager.log");
    let (child, am_port) = start_on_free_port(
        "alertmanager",
        Some(&log),
        |port| {
            let mut c = Command::new(&bin);
            c.arg(format!("--config.file={}", am_dir.join("am.yml").display()))
                .arg(format!("--storage.path={}", am_dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            c
        },
        |port| http_get(port, "/-/ready").is_some_and(|(c, _)| c == 200),
    );
    let _am = Server { child, port: am_port, dir: am_dir };

    let dir = TempDir::new("respond-am");
    pipeline(
        &dir,
        &format!("  respond am = alertmanager(hot, url: \"http://127.0.0.1:{am_port}\", labels: {{ team: \"sre\" }}, resend: 1s)"),
    );
    data(&dir, &rows(20, 3, 0)); // still firing at the end
    let e = start_engine(&dir, &[], &[]);
    let alerts = |active: bool| -> Vec<serde_json::Value> {
        http_get(am_port, &format!("/api/v2/alerts?active={active}&silenced=false&inhibited=false&unprocessed=true"))
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or_default()
    };
    let alert = wait_for("the alert in Alertmanager", Duration::from_secs(60), || {
        alerts(true).into_iter().find(|a| a["labels"]["alertname"] == "VigilIncident")
    });
    assert_eq!(alert["labels"]["team"], "sre");
    assert_eq!(alert["labels"]["pipeline"], "resp");
    assert!(alert["annotations"]["summary"].as_str().unwrap().contains("firing"));
    // Re-sent while firing.
    let id = e.wait_incident("firing")["id"].as_str().unwrap().to_owned();
    wait_for("a re-send", Duration::from_secs(30), || {
        e.incident(&id)["notifications"].as_array()?.iter().any(|n| n["transition"] == "resend-1" && n["status"] == "sent").then_some(())
    });
    // The anomaly clears: the alert ends.
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("data.csv")).unwrap();
    f.write_all(format!("{},10\n", vigil::time::format_timestamp(vigil::time::now_ms() + 60_000)).as_bytes()).unwrap();
    drop(f);
    e.wait_incident("resolved");
    wait_for("the alert to end", Duration::from_secs(60), || {
        alerts(true).iter().all(|a| a["labels"]["alertname"] != "VigilIncident").then_some(())
    });
}

// ---------------------------------------------------------------- exec, templates

#[test]
fn exec_runs_argv_without_a_shell_with_an_allowlisted_environment_and_timeouts() {
    let dir = TempDir::new("respond-exec");
    pipeline(
        &dir,
        r#"  respond envdump = exec(hot, command: ["env"], env: ["KEEP_ME"])
  respond hang = exec(hot, command: ["sleep", "30"], timeout: 300ms)
  respond missing = exec(hot, command: ["/no/such/program", "{{ incident.id }}"])
  respond marker = exec(hot, command: ["touch", "marker-{{ incident.status }}"])"#,
    );
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[("KEEP_ME", "yes".into()), ("DROP_ME", "no".into())], &[]);
    let incidents = wait_for("four resolved incidents", Duration::from_secs(60), || {
        let v = e.incidents();
        (v.iter().filter(|i| i["status"] == "resolved").count() == 4).then_some(v)
    });
    let by_stage = |s: &str| {
        let i = incidents.iter().find(|i| i["stage"] == s).unwrap();
        e.wait_settled(i["id"].as_str().unwrap(), 2)
    };
    let env = by_stage("resp.envdump");
    let sent = env["audit"].as_array().unwrap().iter().find(|a| a["event"] == "sent").unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(sent.contains("KEEP_ME=yes") && sent.contains("VIGIL_INCIDENT="), "{sent}");
    assert!(!sent.contains("DROP_ME"), "only allowlisted variables pass: {sent}");
    let hang = by_stage("resp.hang");
    assert!(
        hang["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "failed" && n["last_error"].as_str().unwrap().contains("killed")),
        "{hang}"
    );
    let missing = by_stage("resp.missing");
    assert!(missing["notifications"][0]["last_error"].as_str().unwrap().contains("cannot run `/no/such/program`"), "{missing}");
    by_stage("resp.marker");
    assert!(dir.join("marker-firing").exists() && dir.join("marker-resolved").exists(), "argv templates rendered, run in order");
}

#[test]
fn an_incident_whose_series_stops_reporting_resolves_after_the_resolve_timeout() {
    let dir = TempDir::new("respond-stale");
    pipeline(&dir, "  respond report = log(hot) {\n    resolve_timeout 1s\n  }");
    data(&dir, &rows(20, 3, 0)); // the data ends while the anomaly lasts
    let e = start_engine(&dir, &[], &[]);
    let inc = e.wait_incident("resolved");
    let v = e.incident(inc["id"].as_str().unwrap());
    let why = v["audit"].as_array().unwrap().iter().find(|a| a["event"] == "resolved").unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(why.starts_with("no data from") && why.ends_with("for 1s"), "{why}");
    let outbox = wait_for("the resolution in the outbox", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.join("state/outbox.jsonl")).ok().filter(|o| o.contains("\"resolved\""))
    });
    assert!(outbox.contains("\"firing\""), "{outbox}");
}

#[test]
fn a_template_that_fails_to_render_still_notifies_and_is_audited() {
    let dir = TempDir::new("respond-template");
    let rx = Receiver::start(&[]);
    pipeline(
        &dir,
        "  respond chat = slack(hot, url: secret(\"env:SLACK_URL\"), text: \"{{ incident.status | no_such_filter }} {{ incident.key }}\")",
    );
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[("SLACK_URL", format!("http://127.0.0.1:{}/s", rx.port))], &[]);
    let inc = e.wait_incident("resolved");
    let v = e.wait_settled(inc["id"].as_str().unwrap(), 2);
    assert!(v["audit"].as_array().unwrap().iter().any(|a| a["event"] == "render_failed"), "{v}");
    let got = rx.at("/s");
    assert_eq!(got.len(), 2);
    // The default message goes out instead, never the error text.
    assert!(got[0].body.contains(inc["key"].as_str().unwrap()) && got[0].body.contains("firing"), "{}", got[0].body);
    assert!(!got[0].body.contains("error"), "{}", got[0].body);
}

// ---------------------------------------------------------------- API, CLI, silences, dry run

fn cli(api: u16, args: &[&str], token: bool) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.args(args).args(["--api", &format!("http://127.0.0.1:{api}")]).env_remove("VIGIL_API_TOKEN");
    if token {
        c.env("VIGIL_API_TOKEN", TOKEN);
    }
    c.output().unwrap()
}

#[test]
fn acknowledge_feedback_and_resolve_through_the_api_and_cli() {
    let dir = TempDir::new("respond-api");
    let rx = Receiver::start(&[]);
    pipeline(
        &dir,
        &format!("  respond page = pagerduty(hot, routing_key: secret(\"env:PD_KEY\"), url: \"http://127.0.0.1:{}/pd\") {{\n    repeat every 1s\n  }}", rx.port),
    );
    data(&dir, &rows(20, 3, 0));
    let e = start_engine(&dir, &[("PD_KEY", "k".into())], &[]);
    let id = e.wait_incident("firing")["id"].as_str().unwrap().to_owned();
    // Unacknowledged: repeated.
    wait_for("a repeat", Duration::from_secs(30), || rx.at("/pd").len().ge(&2).then_some(()));
    // Mutations need the token.
    let path = format!("/api/v1/incidents/{id}/ack");
    assert_eq!(http("POST", e.port, &path, "{}", &[]).unwrap().0, 401);
    assert_eq!(http("POST", e.port, &path, "{}", &[("Authorization", "Bearer wrong")]).unwrap().0, 401);
    let out = cli(e.port, &["incidents", "ack", &id, "--by", "alice"], false);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VIGIL_API_TOKEN"));
    let out = cli(e.port, &["incidents", "ack", &id, "--by", "alice"], true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acked = e.incident(&id);
    assert_eq!(acked["incident"]["acknowledged_by"], "alice (token operator)", "the person and the token that acted");
    // PagerDuty hears the acknowledgement.
    wait_for("PagerDuty acknowledge", Duration::from_secs(30), || {
        rx.at("/pd").iter().any(|r| r.body.contains("\"event_action\":\"acknowledge\"")).then_some(())
    });
    // Feedback is stored with the incident.
    assert!(cli(e.port, &["incidents", "feedback", &id, "--verdict", "false_positive", "--note", "deploy"], true).status.success());
    assert_eq!(e.incident(&id)["incident"]["feedback"], "false_positive");
    let bad = http(
        "POST",
        e.port,
        &format!("/api/v1/incidents/{id}/feedback"),
        r#"{"verdict":"maybe"}"#,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(bad.unwrap().0, 409);
    assert_eq!(
        http("POST", e.port, &format!("/api/v1/incidents/{id}/ack"), "not json", &[("Authorization", &format!("Bearer {TOKEN}"))])
            .unwrap()
            .0,
        400
    );
    // Resolve by hand: PagerDuty resolves, the CLI lists it.
    assert!(cli(e.port, &["incidents", "resolve", &id], true).status.success());
    wait_for("PagerDuty resolve", Duration::from_secs(30), || {
        rx.at("/pd").iter().any(|r| r.body.contains("\"event_action\":\"resolve\"")).then_some(())
    });
    let list = cli(e.port, &["incidents", "list"], false);
    assert!(String::from_utf8_lossy(&list.stdout).contains(&id) && String::from_utf8_lossy(&list.stdout).contains("resolved"));
    assert_eq!(cli(e.port, &["incidents", "ack", "nope"], true).status.code(), Some(2));
}

#[test]
fn silences_keep_incidents_quiet_and_dry_run_prints_instead_of_sending() {
    let dir = TempDir::new("respond-silence");
    let rx = Receiver::start(&[]);
    pipeline(&dir, &format!("  respond hook = webhook(hot, url: \"http://127.0.0.1:{}/h\")", rx.port));
    data(&dir, "");
    let e = start_engine(&dir, &[], &[]);
    // `--for` reads durations as the language writes them (one codec: `vigil::time`).
    let out = cli(e.port, &["silences", "add", "--match", "pipeline=resp", "--for", "1h30m", "--comment", "maintenance"], true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = &serde_json::from_str::<serde_json::Value>(&http_get(e.port, "/api/v1/silences").unwrap().1).unwrap()[0];
    assert_eq!(s["ends_at"].as_i64().unwrap() - s["starts_at"].as_i64().unwrap(), 5_400_000, "{s}");
    let listed = String::from_utf8_lossy(&cli(e.port, &["silences", "list"], false).stdout).into_owned();
    assert!(listed.contains("active") && listed.contains("maintenance"), "{listed}");
    assert_eq!(cli(e.port, &["silences", "add", "--match", "nokeyvalue", "--for", "1h"], true).status.code(), Some(2));
    data(&dir, &rows(20, 3, 5));
    let inc = e.wait_incident("resolved");
    assert_eq!(inc["silenced"], true);
    let v = e.incident(inc["id"].as_str().unwrap());
    assert!(v["audit"].as_array().unwrap().iter().any(|a| a["event"] == "silenced"), "{v}");
    assert!(v["notifications"].as_array().unwrap().is_empty());
    assert!(rx.at("/h").is_empty(), "nothing was sent");
    // Expire it: the next incident notifies.
    let sid = serde_json::from_str::<serde_json::Value>(&http_get(e.port, "/api/v1/silences").unwrap().1).unwrap()[0]["id"].to_string();
    assert!(cli(e.port, &["silences", "expire", &sid], true).status.success());
    drop(e);

    // --dry-run: printed, not sent.
    let dir = TempDir::new("respond-dry");
    pipeline(&dir, &format!("  respond hook = webhook(hot, url: \"http://127.0.0.1:{}/h\")", rx.port));
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[], &["--dry-run"]);
    let inc = e.wait_incident("resolved");
    let v = e.wait_settled(inc["id"].as_str().unwrap(), 2);
    assert!(v["notifications"].as_array().unwrap().iter().all(|n| n["status"] == "dry_run"), "{v}");
    let out = wait_for("the dry run's output", Duration::from_secs(10), || {
        Some(e.stdout()).filter(|s| s.matches("[dry-run] webhook POST").count() >= 2)
    });
    assert!(out.contains("\"transition\":\"firing\""), "{out}");
    assert!(rx.at("/h").is_empty(), "a dry run sends nothing");
}

#[test]
fn rate_limits_hold_notifications_back_and_group_by_makes_one_incident() {
    // Rate limit: two incidents, room for one notification (a resolution of an incident
    // whose opening was sent is owed, and always goes out).
    let dir = TempDir::new("respond-rate");
    let rx = Receiver::start(&[]);
    pipeline(&dir, &format!("  respond hook = webhook(hot, url: \"http://127.0.0.1:{}/h\") {{\n    rate_limit 1 per 1h\n  }}", rx.port));
    let mut body = rows(20, 3, 5);
    let later = rows(3, 3, 5);
    // The second spike after the first (timestamps moved on by an hour).
    for line in later.lines() {
        let (ts, v) = line.split_once(',').unwrap();
        let t = vigil::time::parse_timestamp(ts).unwrap() + 3_600_000;
        body.push_str(&format!("{},{v}\n", vigil::time::format_timestamp(t)));
    }
    data(&dir, &body);
    let e = start_engine(&dir, &[], &[]);
    let incidents = wait_for("two resolved incidents", Duration::from_secs(60), || {
        let v = e.incidents();
        (v.iter().filter(|i| i["status"] == "resolved").count() == 2).then_some(v)
    });
    let newest = e.incident(incidents[0]["id"].as_str().unwrap());
    let limited = newest["audit"].as_array().unwrap().iter().filter(|a| a["event"] == "rate_limited").count();
    assert_eq!(limited, 2, "the second incident's notifications are held back: {newest}");
    let oldest = e.wait_settled(incidents[1]["id"].as_str().unwrap(), 2);
    assert!(oldest["notifications"].as_array().unwrap().iter().all(|n| n["status"] == "sent"));
    assert_eq!(rx.at("/h").len(), 2);
    drop(e);

    // group_by: two series with the same `job` label are one incident.
    let dir = TempDir::new("respond-group");
    std::fs::write(
        dir.join("resp.vigil"),
        "pipeline resp {\n  every 200ms\n  collect raw = csv(path: \"data.csv\", value_columns: [\"a\", \"b\"], labels: { job: \"api\" })\n  predict hot = threshold(raw, above: 90.0)\n  respond out = log(hot, group_by: [\"job\"])\n}\n",
    )
    .unwrap();
    let start = vigil::time::now_ms() - 30 * 60_000;
    let mut csv = String::from("timestamp,a,b\n");
    for i in 0..30 {
        // `a` hot from minute 20 to 22, `b` from 21 to 24: they overlap at 21 and 22.
        let (a, b) = match i {
            20 => (100, 10),
            21..=22 => (100, 100),
            23..=24 => (10, 100),
            _ => (10, 10),
        };
        csv.push_str(&format!("{},{a},{b}\n", vigil::time::format_timestamp(start + i * 60_000)));
    }
    stage(&dir, &csv);
    let e = start_engine(&dir, &[], &[]);
    let inc = e.wait_incident("resolved");
    assert_eq!(e.incidents().len(), 1, "one incident for the group");
    assert_eq!(inc["series"].as_array().unwrap().len(), 2, "{inc}");
    let v = e.incident(inc["id"].as_str().unwrap());
    assert!(v["audit"].as_array().unwrap().iter().any(|a| a["event"] == "grouped"), "{v}");
}

/// A respond stage fed another's incidents routes them, as Alertmanager's routes do: its
/// `when:` reads the incident's fields (`severity` is its label), each incident it picks
/// opens one of its own on its channel, which resolves when the upstream one does.
#[test]
fn incidents_of_one_stage_are_routed_to_channels_by_severity_and_value() {
    let dir = TempDir::new("respond-route");
    let rx = Receiver::start(&[]);
    let url = format!("http://127.0.0.1:{}", rx.port);
    std::fs::write(
        dir.join("resp.vigil"),
        format!(
            "pipeline resp {{\n  every 200ms\n  collect raw = csv(path: \"data.csv\", value_columns: [\"a\", \"b\"], labels: {{ severity: \"critical\" }})\n  \
             predict hot = threshold(raw, above: 90.0)\n  respond team = log(hot)\n  \
             respond page = webhook(team, url: \"{url}/page\", when: team.severity == \"critical\" and team.value >= 500.0)\n  \
             respond chat = webhook(team, url: \"{url}/chat\", when: team.value < 500.0)\n}}\n"
        ),
    )
    .unwrap();
    let start = vigil::time::now_ms() - 30 * 60_000;
    let mut csv = String::from("timestamp,a,b\n");
    for i in 0..30 {
        // `a` at 100 from minute 15 to 17, `b` at 1000 from 20 to 22.
        let (a, b) = match i {
            15..=17 => (100, 10),
            20..=22 => (10, 1000),
            _ => (10, 10),
        };
        csv.push_str(&format!("{},{a},{b}\n", vigil::time::format_timestamp(start + i * 60_000)));
    }
    stage(&dir, &csv);
    let e = start_engine(&dir, &[], &[]);
    let incidents = wait_for("four resolved incidents", Duration::from_secs(60), || {
        let v = e.incidents();
        (v.iter().filter(|i| i["status"] == "resolved").count() == 4).then_some(v)
    });
    for i in &incidents {
        e.wait_settled(i["id"].as_str().unwrap(), 2);
    }
    let stages = |stage: &str| incidents.iter().filter(|i| i["stage"] == stage).count();
    assert_eq!((stages("resp.team"), stages("resp.page"), stages("resp.chat")), (2, 1, 1), "{incidents:#?}");
    let got = |path: &str| -> Vec<(String, String)> {
        rx.at(path)
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                let series = &v["incident"]["series"];
                let series = series.as_str().or_else(|| series[0].as_str()).unwrap_or_else(|| panic!("{v}"));
                (v["transition"].as_str().unwrap().to_owned(), series.to_owned())
            })
            .collect()
    };
    let (page, chat) = (got("/page"), got("/chat"));
    assert_eq!(page.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["firing", "resolved"], "{page:?}");
    assert!(page.iter().all(|(_, s)| s.starts_with('b')), "{page:?}");
    assert_eq!(chat.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["firing", "resolved"], "{chat:?}");
    assert!(chat.iter().all(|(_, s)| s.starts_with('a')), "{chat:?}");
    let routed = incidents.iter().find(|i| i["stage"] == "resp.page").unwrap();
    assert_eq!(routed["labels"]["severity"], "critical");
}

/// An upstream incident resolved by hand resolves the incidents routed from it, after a
/// restart too: the upstream stage, which restored its firing incidents, tells the stages
/// downstream, and the routed stage resolves its own on its channel.
#[test]
fn a_routed_incident_resolves_when_its_upstream_one_is_resolved_by_hand_after_a_restart() {
    let dir = TempDir::new("respond-route-by-hand");
    let rx = Receiver::start(&[]);
    pipeline(
        &dir,
        &format!(
            "  respond team = log(hot)\n  respond page = webhook(team, url: \"http://127.0.0.1:{}/page\", when: team.value > 50.0)",
            rx.port
        ),
    );
    // Ends hot: both incidents stay firing.
    data(&dir, &rows(5, 3, 0));
    let mut e = start_engine(&dir, &[], &[]);
    let firing = |e: &Engine, stage: &str| e.incidents().into_iter().find(|i| i["stage"] == stage && i["status"] == "firing");
    let routed = wait_for("the routed incident", Duration::from_secs(60), || firing(&e, "resp.page"));
    let upstream = firing(&e, "resp.team").expect("the upstream incident fires");
    wait_for("the routed incident's notification", Duration::from_secs(30), || {
        rx.at("/page").iter().any(|r| r.body.contains("\"transition\":\"firing\"")).then_some(())
    });
    e.kill9();
    let e = start_engine(&dir, &[], &[]);
    e.wait_first_tick();
    let out = cli(e.port, &["incidents", "resolve", upstream["id"].as_str().unwrap()], true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The source keeps reporting (hot): the upstream stage runs with each new row.
    let csv = dir.join("data.csv");
    wait_for("the routed incident resolved", Duration::from_secs(60), || {
        let row = format!("{},100\n", vigil::time::format_timestamp(vigil::time::now_ms()));
        std::fs::OpenOptions::new().append(true).open(&csv).unwrap().write_all(row.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        (e.incident(routed["id"].as_str().unwrap())["incident"]["status"] == "resolved").then_some(())
    });
    wait_for("the routed incident's resolution on its channel", Duration::from_secs(30), || {
        rx.at("/page")
            .iter()
            .any(|r| r.body.contains("\"transition\":\"resolved\"") && r.body.contains(routed["id"].as_str().unwrap()))
            .then_some(())
    });
}

/// The engine's tick count for the test pipeline, from `/metrics`.
fn ticks(port: u16) -> f64 {
    let (_, m) = http_get(port, "/metrics").unwrap_or_default();
    m.lines()
        .filter(|l| l.starts_with("vigil_ticks_total{") && l.contains("pipeline=\"resp\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn unacknowledged_incidents_escalate_once_and_maintenance_windows_silence() {
    let dir = TempDir::new("respond-escalate");
    let rx = Receiver::start(&[]);
    let base = format!("http://127.0.0.1:{}", rx.port);
    // `boss` opens nothing itself (no value is that high): it only hears escalations.
    pipeline(
        &dir,
        &format!(
            "  respond page = webhook(hot, url: \"{base}/page\") {{\n    escalate after 1s to boss\n  }}\n  respond boss = slack(hot, url: secret(\"env:BOSS_URL\"), when: hot.value > 1000.0, text: \"{{{{ transition }}}} {{{{ incident.key }}}}\")"
        ),
    );
    data(&dir, &rows(20, 3, 0)); // still firing at the end
    let e = start_engine(&dir, &[("BOSS_URL", format!("{base}/boss"))], &[]);
    let inc = e.wait_incident("firing");
    let id = inc["id"].as_str().unwrap().to_owned();
    let boss = wait_for("the escalation", Duration::from_secs(30), || Some(rx.at("/boss")).filter(|b| !b.is_empty()));
    let v: serde_json::Value = serde_json::from_str(&boss[0].body).unwrap();
    assert!(v["text"].as_str().unwrap().starts_with("escalated resp/resp.page/"), "{v}");
    let audit = e.incident(&id)["audit"].clone();
    assert!(audit.as_array().unwrap().iter().any(|a| a["event"] == "escalated"), "{audit}");
    // Once only: more ticks, no second escalation.
    let t = ticks(e.port);
    wait_for("five more ticks", Duration::from_secs(30), || (ticks(e.port) >= t + 5.0).then_some(()));
    assert_eq!(rx.at("/boss").len(), 1, "escalated once");
    assert_eq!(rx.at("/page").len(), 1, "the page itself: firing once");
    drop(e);

    // An acknowledged incident does not escalate.
    let dir = TempDir::new("respond-escalate-ack");
    let rx = Receiver::start(&[]);
    let base = format!("http://127.0.0.1:{}", rx.port);
    pipeline(
        &dir,
        &format!(
            "  respond page = webhook(hot, url: \"{base}/page\") {{\n    escalate after 3s to boss\n  }}\n  respond boss = webhook(hot, url: \"{base}/boss\", when: hot.value > 1000.0)"
        ),
    );
    data(&dir, &rows(20, 3, 0));
    let e = start_engine(&dir, &[], &[]);
    let id = e.wait_incident("firing")["id"].as_str().unwrap().to_owned();
    assert!(cli(e.port, &["incidents", "ack", &id], true).status.success());
    let t = ticks(e.port);
    // 3 s of ticks at 200 ms and then some.
    wait_for("twenty more ticks", Duration::from_secs(60), || (ticks(e.port) >= t + 20.0).then_some(()));
    assert!(rx.at("/boss").is_empty(), "an acknowledged incident is not escalated");
    drop(e);

    // A maintenance window that is always open: incidents open silenced.
    let dir = TempDir::new("respond-maintenance");
    let rx = Receiver::start(&[]);
    pipeline(
        &dir,
        &format!("  respond hook = webhook(hot, url: \"http://127.0.0.1:{}/h\") {{\n    maintenance \"* * * * *\" for 1h\n  }}", rx.port),
    );
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[], &[]);
    let inc = e.wait_incident("resolved");
    assert_eq!(inc["silenced"], true);
    let v = e.incident(inc["id"].as_str().unwrap());
    assert!(
        v["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["event"] == "silenced" && a["detail"].as_str().unwrap().contains("maintenance window")),
        "{v}"
    );
    assert!(v["notifications"].as_array().unwrap().is_empty() && rx.at("/h").is_empty(), "nothing sent in a maintenance window");
}

#[test]
fn a_hung_smtp_server_does_not_hold_up_other_channels() {
    let dir = TempDir::new("respond-hung");
    // An SMTP server that accepts connections and never answers.
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let stall_port = stall.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in stall.incoming().flatten() {
            held.push(s);
        }
    });
    let rx = Receiver::start(&[]);
    pipeline(&dir, &format!("{EMAIL}\n  respond hook = webhook(hot, url: \"http://127.0.0.1:{}/h\")", rx.port));
    data(&dir, &rows(20, 3, 5));
    let e = start_engine(&dir, &[("SMTP_URL", format!("smtp://127.0.0.1:{stall_port}"))], &[]);
    // Both webhook notifications arrive while the mail still hangs (its timeout is 30 s).
    wait_for("the webhook's firing and resolved", Duration::from_secs(20), || (rx.at("/h").len() >= 2).then_some(()));
    let mail = e.incidents().into_iter().find(|i| i["stage"] == "resp.mail").expect("the mail stage's incident");
    let v = e.incident(mail["id"].as_str().unwrap());
    assert!(v["notifications"].as_array().unwrap().iter().all(|n| n["status"] == "pending"), "the mail is still trying: {v}");
}
