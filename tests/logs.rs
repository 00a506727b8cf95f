//! Log template mining: accuracy on Loghub (grouping accuracy, computed here from the
//! labelled samples in `../shared/data/loghub-dev`), bad input, the cap, and the output of
//! `vigil templates`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vigil::logs::{report, Config, HeaderFormat, Miner};

const SETS: [(&str, &str); 8] = [
    ("HDFS", "<Date> <Time> <Pid> <Level> <Component>: <Content>"),
    ("Hadoop", "<Date> <Time> <Level> [<Process>] <Component>: <Content>"),
    ("Zookeeper", "<Date> <Time> - <Level>  [<Node>:<Component>@<Id>] - <Content>"),
    ("HPC", "<LogId> <Node> <Component> <State> <Time> <Flag> <Content>"),
    ("Linux", "<Month> <Date> <Time> <Level> <Component>([<PID>])?: <Content>"),
    ("HealthApp", "<Time>|<Component>|<Pid>|<Content>"),
    ("Proxifier", "[<Time>] <Program> - <Content>"),
    ("OpenStack", "<Logrecord> <Date> <Time> <Pid> <Level> <Component> [<ADDR>] <Content>"),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/loghub-dev")
}

fn vigil(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1");
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// RFC 4180 CSV: quotes, doubled quotes, newlines inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field, mut quoted, mut any) = (Vec::new(), Vec::new(), String::new(), false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        any = true;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            (false, c) => field.push(c),
        }
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Mines one dataset with the library (as `vigil templates` does) and scores it: GA with
/// each line's template after the last line (merges resolved), GA with the id each line
/// was given when it was read (online), and the number of templates.
fn dataset_ga(name: &str, format: &str) -> (f64, f64, usize) {
    let dir = data_dir().join(name);
    let log = std::fs::read(dir.join(format!("{name}_2k.log"))).unwrap();
    let csv = std::fs::read_to_string(dir.join(format!("{name}_2k.log_structured.csv"))).unwrap();
    let rows = parse_csv(&csv);
    let ev = rows[0].iter().position(|h| h == "EventId").expect("an EventId column");
    let truth: Vec<Option<&str>> = rows[1..].iter().map(|r| Some(r[ev].as_str()).filter(|s| !s.is_empty())).collect();
    let header = HeaderFormat::new(format).unwrap();
    let mined = report::mine(&log[..], Some(&header), Config::default(), true).unwrap();
    assert_eq!(mined.line_ids.len(), truth.len(), "{name}: lines and labels");
    assert_eq!(mined.unparsed, 0, "{name}: every line has the header");
    // The same, online, with the library's miner directly.
    let mut miner = Miner::default();
    let text = String::from_utf8_lossy(&log);
    let online: Vec<_> = text.lines().map(|l| miner.ingest(header.content(l).map_or(l, |(s, e)| &l[s..e])).id).collect();
    let resolved: Vec<_> = online.iter().map(|&id| miner.resolve(id)).collect();
    assert_eq!(resolved, mined.line_ids, "{name}: the library and the report agree");
    let ga = vigil::logs::ga::grouping_accuracy;
    (ga(&truth, &mined.line_ids), ga(&truth, &online), mined.templates.len())
}

#[test]
fn grouping_accuracy_on_loghub() {
    let (mut sum, mut sum_online) = (0.0, 0.0);
    let mut table = String::new();
    for (name, format) in SETS {
        let (ga, online, templates) = dataset_ga(name, format);
        table.push_str(&format!("{name:<10} GA {ga:.3}  online {online:.3}  ({templates} templates)\n"));
        assert!(ga >= 0.90, "{name}: GA {ga:.3} below 0.90\n{table}");
        sum += ga;
        sum_online += online;
    }
    let (mean, mean_online) = (sum / SETS.len() as f64, sum_online / SETS.len() as f64);
    eprintln!("{table}mean GA {mean:.3}  online {mean_online:.3}");
    // Measured 0.983 (online 0.973; BENCHMARKS.md): a regression test, not a record.
    assert!(mean >= 0.97, "mean GA {mean:.3} below 0.97\n{table}");
    assert!(mean_online >= 0.96, "mean online GA {mean_online:.3} below 0.96\n{table}");
}

#[test]
fn header_formats_compile_like_the_benchmark() {
    let h = HeaderFormat::new("<Month> <Date> <Time> <Level> <Component>([<PID>])?: <Content>").unwrap();
    assert_eq!(h.fields(), ["Month", "Date", "Time", "Level", "Component", "PID", "Content"]);
    let line = "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown";
    let (s, e) = h.content(line).unwrap();
    assert_eq!(&line[s..e], "check pass; user unknown");
    for bad in ["<Date> <Time>", "<Date <Content>", "<A> <A> <Content>", "<1x> <Content>", "<A> <>: <Content>"] {
        assert!(HeaderFormat::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn bad_input_does_not_blow_up() {
    let mut m = Miner::default();
    let started = std::time::Instant::now();
    // A 10 MB line without spaces, one with spaces, 10 000 tokens, NUL bytes, invalid UTF-8.
    let a = m.ingest(&"x".repeat(10 << 20)).id;
    let b = m.ingest(&"ab ".repeat((10 << 20) / 3)).id;
    let many: String = (0..10_000).map(|i| format!("word{i} other ")).collect();
    let c = m.ingest(&many).id;
    let d = m.ingest("nul\0byte\0 here 5").id;
    let e = m.ingest_bytes(b"bad \xff\xfe utf8 7").id;
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    let ids = [a, b, c, d, e];
    for id in ids {
        assert!(m.get(id).is_some());
    }
    assert!(m.get(c).unwrap().text().len() < 10_000, "long messages are cut at 256 tokens");
    assert_eq!(m.ingest("nul\0byte\0 here 6").id, d);
}

#[test]
fn the_cap_holds_and_evictions_are_counted() {
    // 100 000 lines of distinct random words (each its own template) under a cap of 500.
    let mut m = Miner::new(Config { max_templates: 500, ..Config::default() });
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut word = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (0..9).map(|i| char::from(b'a' + ((x >> (i * 6)) % 26) as u8)).collect::<String>()
    };
    let mut evicted_events = 0;
    for _ in 0..100_000 {
        let line = format!("{} {} {} {}", word(), word(), word(), word());
        m.ingest(&line);
        assert!(m.len() <= 500);
        evicted_events += m.take_events().iter().filter(|e| matches!(e, vigil::logs::Event::Evicted { .. })).count() as u64;
    }
    assert_eq!(m.evictions(), evicted_events);
    assert!(m.evictions() >= 99_000, "{}", m.evictions());
    // Recent templates survive: the last line is still known.
    assert!(m.templates().any(|t| t.last_seen == 100_000));
}

#[test]
fn ids_are_stable_through_merges() {
    let mut m = Miner::default();
    let first = m.ingest("session closed for user alice").id;
    let ids: Vec<_> = ["bob", "carol", "dave"].iter().map(|u| m.ingest(&format!("session closed for user {u}")).id).collect();
    // The fourth distinct user made the place a variable; the group keeps the first id.
    assert_eq!(m.resolve(ids[2]), first);
    assert!(ids.iter().all(|&i| m.resolve(i) == first));
    assert_eq!(m.get(first).unwrap().text(), "session closed for user <*>");
    assert_eq!(m.ingest("session closed for user erin").id, first);
    // Enumerations of fewer values stay apart.
    let get = m.ingest("request GET /a status 200").id;
    let post = m.ingest("request POST /b status 201").id;
    assert_ne!(get, post);
}

fn tmp(name: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn cli_csv_has_one_row_per_line() {
    let log = data_dir().join("HDFS/HDFS_2k.log");
    let out_csv = std::env::temp_dir().join(format!("vigil-logs-hdfs-{}.csv", std::process::id()));
    let o = vigil(&["templates", log.to_str().unwrap(), "--header", SETS[0].1, "--output", out_csv.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2000 lines"), "{stderr}");
    let rows = parse_csv(&std::fs::read_to_string(&out_csv).unwrap());
    assert_eq!(rows[0], ["line", "template_id", "template"]);
    assert_eq!(rows.len(), 2001);
    for (i, r) in rows[1..].iter().enumerate() {
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (i + 1).to_string());
        assert!(r[1].parse::<u64>().is_ok());
    }
    assert_eq!(rows[1][2], "PacketResponder <*> for block blk_<*> terminating");
    // The same line, the same id.
    assert_eq!(rows[1][1], rows[2][1]);
    let _ = std::fs::remove_file(out_csv);
}

#[test]
fn cli_quotes_csv_and_counts_bad_lines() {
    let input = b"INFO: a, \"quoted\" thing 1\nINFO: a, \"quoted\" thing 2\nno header at all\nINFO: bad \xff utf8 \0 nul\n";
    let log = tmp("bad.log", input);
    let out_csv = log.with_extension("csv");
    let o = vigil(&["templates", log.to_str().unwrap(), "--header", "<Level>: <Content>", "--output", out_csv.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("4 lines") && stderr.contains("1 lines without the header") && stderr.contains("1 not valid UTF-8"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&out_csv).unwrap();
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[1][2], "a, \"quoted\" thing <*>");
    assert!(text.contains("\"a, \"\"quoted\"\" thing <*>\""), "{text}");
    assert_eq!(rows[3][2], "no header at all");
}

#[test]
fn cli_text_and_json() {
    let input = "I start a\nI stop 2\nI stop 3\nI stop 4\n";
    let o = vigil(&["templates", "-", "--header", "<Level> <Content>"], Some(input.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("count") && lines[0].contains("template"), "{text}");
    assert!(lines[1].trim_start().starts_with('3') && lines[1].ends_with("<*>"), "most frequent first: {text}");
    assert!(lines[1].contains("stop <*>") && lines[2].trim_start().starts_with('1') && lines[2].ends_with("start a"), "{text}");
    assert!(text.contains("4 lines, 2 templates"), "{text}");

    let o = vigil(
        &["templates", "-", "--header", "<Level> <Content>", "--format", "json", "--max-templates", "1"],
        Some(b"x alpha one\nx beta two\nx gamma three\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["lines"], 3);
    assert_eq!(v["evictions"], 2);
    let t = v["templates"].as_array().unwrap();
    assert_eq!(t.len(), 3, "evicted templates are listed, flagged");
    assert_eq!(t.iter().filter(|t| t["evicted"] == true).count(), 2);
    assert!(t.iter().all(|t| t["id"].is_u64() && t["count"] == 1 && t["template"].is_string()));
}

#[test]
fn cli_usage_errors_exit_2() {
    let log = tmp("x.log", b"a\n");
    for (args, needle) in [
        (vec!["templates", log.to_str().unwrap(), "--header", "<Date <Content>"], "bad header format"),
        (vec!["templates", log.to_str().unwrap(), "--header", "<Date> <Time>"], "<Content>"),
        (vec!["templates", log.to_str().unwrap(), "--header", "<Content>", "--mask", "("], "bad --mask"),
        (vec!["templates", "/nonexistent/file.log", "--header", "<Content>"], "cannot read"),
    ] {
        let o = vigil(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let o = vigil(&["templates", "--help"], None);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("--header") && help.contains("--mask") && help.contains("--max-templates") && help.contains("Examples"),
        "{help}"
    );
}

#[test]
fn cli_masks() {
    let input = "job-alpha started on node\njob-beta started on node\n";
    let o = vigil(&["templates", "-", "--header", "<Content>", "--mask", "job-[a-z]+"], Some(input.as_bytes()));
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("2 lines, 1 templates") && text.contains("<*> started on node"), "{text}");
}

/// The speed figure of BENCHMARKS.md (timings are never asserted):
/// `cargo test --release --test logs -- --ignored --nocapture mining_speed`.
#[test]
#[ignore = "a measurement; run with --release --ignored"]
fn mining_speed() {
    let one = std::fs::read_to_string(data_dir().join("HDFS/HDFS_2k.log")).unwrap();
    let data = one.repeat(500);
    let header = HeaderFormat::new(SETS[0].1).unwrap();
    let mut spans = Vec::new();
    for run in 0..3 {
        let mut miner = Miner::default();
        let started = std::time::Instant::now();
        let mut lines = 0u64;
        for line in data.lines() {
            let content =
                if header.parse_into(line, &mut spans) { spans[header.content_index()].map_or(line, |(s, e)| &line[s..e]) } else { line };
            miner.ingest(content);
            lines += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!("run {run}: {lines} lines in {secs:.3} s: {:.0} lines/s, {} templates", lines as f64 / secs, miner.len());
    }
}
