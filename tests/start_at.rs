//! No paging on the past: where `vigil run` starts in a file met for the first time, and
//! what it notifies about the backlog it reads when told to start at the beginning. The
//! real binary, a file written before it starts, and the incidents API.

mod common;

use std::time::Duration;

use common::*;

const TOKEN: &str = "start-token-3";

/// CSV rows a minute apart ending `end_ago` minutes before now, with the columns
/// `ts,latency` (not the defaults, so that the header must be known): `values` in order.
fn rows(values: &[f64], end_ago: i64) -> String {
    let now = vigil::time::now_ms();
    let n = values.len() as i64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{},{v}\n", vigil::time::format_timestamp(now - (end_ago + n - 1 - i as i64) * 60_000)))
        .collect()
}

/// A pipeline over `lat.csv` whose `log` stage opens incidents above 500.
fn pipeline(dir: &TempDir, start_at: &str) {
    std::fs::write(
        dir.join("p.vigil"),
        format!(
            "pipeline p {{\n  every 200ms\n  collect raw = csv(path: \"lat.csv\", timestamp_column: \"ts\", value_columns: [\"latency\"]{start_at})\n  \
             predict slow = threshold(raw, above: 500.0)\n  respond page = log(slow)\n}}\n"
        ),
    )
    .unwrap();
}

fn append(dir: &TempDir, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("lat.csv")).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// An incident with its audit trail and notifications.
fn story(e: &Engine, id: &str) -> (Vec<String>, Vec<String>) {
    let v = e.incident(id);
    let audit = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a["event"].as_str().unwrap(), a["detail"].as_str().unwrap()))
        .collect();
    let notes = v["notifications"].as_array().unwrap().iter().map(|n| n["transition"].as_str().unwrap().to_owned()).collect();
    (audit, notes)
}

/// The incident from before the start (a spike seven minutes ago that cleared) is never
/// read; a spike written afterwards pages, read with the header's columns.
#[test]
fn a_new_state_starts_at_the_end_and_pages_only_about_new_rows() {
    let dir = TempDir::new("start-end");
    pipeline(&dir, "");
    let mut old = vec![100.0; 20];
    old[10] = 900.0;
    old[11] = 900.0;
    std::fs::write(dir.join("lat.csv"), format!("ts,latency\n{}", rows(&old, 7))).unwrap();
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    e.wait_first_tick();
    assert!(e.incidents().is_empty(), "the past is not read: {:?}", e.incidents());
    append(&dir, &rows(&[120.0, 950.0], 0));
    let inc = e.wait_incident("firing");
    assert_eq!(inc["value"], 950.0, "{inc}");
    let id = inc["id"].as_str().unwrap();
    let v = e.wait_settled(id, 1);
    assert_eq!(v["notifications"][0]["transition"], "firing", "{v}");
    assert_eq!(e.incidents().len(), 1, "{:?}", e.incidents());
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(log.contains("starting at the end of the file"), "{log}");
}

/// `start_at: "beginning"` on a new state: the backlog builds the incidents it shows, but
/// only the one still open at its end is notified, and the log says so.
#[test]
fn a_backlog_is_recorded_and_only_what_is_still_open_is_notified() {
    let dir = TempDir::new("start-beginning");
    pipeline(&dir, ", start_at: \"beginning\"");
    // An old spike that cleared, then one that is still on at the end of the file.
    let mut values = vec![100.0; 30];
    values[5] = 900.0;
    values[6] = 900.0;
    values[28] = 800.0;
    values[29] = 800.0;
    std::fs::write(dir.join("lat.csv"), format!("ts,latency\n{}", rows(&values, 0))).unwrap();
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let both = wait_for("both incidents", Duration::from_secs(60), || Some(e.incidents()).filter(|i| i.len() == 2));
    let firing = both.iter().find(|i| i["status"] == "firing").expect("one still firing");
    let resolved = both.iter().find(|i| i["status"] == "resolved").expect("one resolved in the backlog");
    let v = e.wait_settled(firing["id"].as_str().unwrap(), 1);
    assert_eq!(v["notifications"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["notifications"][0]["transition"], "firing", "{v}");
    let (audit, notes) = story(&e, resolved["id"].as_str().unwrap());
    assert!(notes.is_empty(), "an incident over before the backlog was read is not sent: {notes:?}");
    assert!(audit.iter().any(|a| a.starts_with("held firing")), "{audit:?}");
    assert!(audit.iter().any(|a| a.starts_with("held resolved")), "{audit:?}");
    let log = wait_for("the catch-up log line", Duration::from_secs(30), || {
        Some(std::fs::read_to_string(dir.join("stderr.log")).ok()?).filter(|l| l.contains("read the backlog a first start found"))
    });
    assert!(log.contains("still_open=1") && log.contains("resolved_in_backlog=1"), "{log}");
    // Live rows after the backlog page as usual: the open incident resolves, and it is
    // sent, since its opening was.
    append(&dir, &rows(&[100.0, 100.0], -2));
    let id = firing["id"].as_str().unwrap();
    wait_for("the resolution", Duration::from_secs(60), || (e.incident(id)["incident"]["status"] == "resolved").then_some(()));
    let v = e.wait_settled(id, 2);
    let transitions: Vec<&str> = v["notifications"].as_array().unwrap().iter().map(|n| n["transition"].as_str().unwrap()).collect();
    assert_eq!(transitions.len(), 2, "{v}");
    assert!(transitions.contains(&"resolved"), "{v}");
}

/// A file that is not there at the first tick is read whole when it appears: nothing in it
/// predates the start.
#[test]
fn a_file_created_after_the_start_is_read_from_its_beginning() {
    let dir = TempDir::new("start-later");
    pipeline(&dir, "");
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    e.wait_first_tick();
    std::fs::write(dir.join("lat.csv"), format!("ts,latency\n{}", rows(&[100.0, 100.0, 700.0], 0))).unwrap();
    let inc = e.wait_incident("firing");
    let v = e.wait_settled(inc["id"].as_str().unwrap(), 1);
    assert_eq!(v["notifications"][0]["transition"], "firing", "{v}");
}

/// A restart goes on from the cursor: rows written while the engine was stopped are read,
/// not skipped as if the state were new.
#[test]
fn a_restart_reads_what_was_written_while_stopped() {
    let dir = TempDir::new("start-restart");
    pipeline(&dir, "");
    std::fs::write(dir.join("lat.csv"), format!("ts,latency\n{}", rows(&[100.0; 5], 3))).unwrap();
    let mut e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    e.wait_first_tick();
    wait_for("a tick past the first", Duration::from_secs(30), || (e.ticks() > 2).then_some(()));
    e.kill9();
    append(&dir, &rows(&[100.0, 800.0], 0));
    let e = Engine::start(&dir, "p.vigil", TOKEN, &[], &[]);
    let inc = e.wait_incident("firing");
    assert_eq!(inc["value"], 800.0, "{inc}");
}

// ------------------------------------------------------------- the reader, in process

mod reader {
    use std::io::Write;

    use super::common::TempDir;
    use vigil::data::Data;
    use vigil::runtime::ops::collect::CsvSource;
    use vigil::runtime::ops::tail::StartAt;
    use vigil::runtime::{Backlog, OpCtx, Source};

    fn write(path: &std::path::Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    async fn tick(src: &mut CsvSource) -> (Vec<f64>, Backlog) {
        let mut ctx = OpCtx::new(0);
        let Data::Series(s) = src.collect(&mut ctx).await.expect("the tick succeeds") else { panic!("series expected") };
        (s.series.iter().flat_map(|c| c.values.iter().copied()).collect(), ctx.backlog)
    }

    fn source(path: &std::path::Path, at: StartAt) -> CsvSource {
        CsvSource::new(path.to_path_buf(), "ts".into(), vec!["v".into()], vec![]).start_at(at)
    }

    #[tokio::test]
    async fn starting_at_the_end_keeps_the_header_and_waits_for_a_partial_line() {
        let dir = TempDir::new("start-reader-end");
        let path = dir.join("d.csv");
        // Columns in an order other than the defaults, and a last line still being written.
        write(&path, "v,ts\n1,1700000000\n2,1700000060\n3,17000");
        let mut src = source(&path, StartAt::End);
        assert_eq!(tick(&mut src).await, (vec![], Backlog::None));
        write(&path, "00120\n4,1700000180\n");
        assert_eq!(tick(&mut src).await.0, vec![3.0, 4.0], "the line being written at the start is read whole; columns from the header");
        // The cursor is a plain cursor from here: a restore goes on from it.
        let cursor = src.cursor().unwrap();
        write(&path, "5,1700000240\n");
        let mut again = source(&path, StartAt::End);
        again.restore(&cursor);
        assert_eq!(tick(&mut again).await.0, vec![5.0]);
    }

    #[tokio::test]
    async fn a_file_that_appears_later_is_read_from_its_start() {
        let dir = TempDir::new("start-reader-later");
        let path = dir.join("d.csv");
        let mut src = source(&path, StartAt::End);
        let mut ctx = OpCtx::new(0);
        assert!(src.collect(&mut ctx).await.is_err(), "no file yet");
        write(&path, "ts,v\n1700000000,7\n");
        assert_eq!(tick(&mut src).await, (vec![7.0], Backlog::None));
    }

    #[tokio::test]
    async fn reading_from_the_beginning_marks_the_backlog_until_it_is_read() {
        let dir = TempDir::new("start-reader-backlog");
        let path = dir.join("d.csv");
        write(&path, "ts,v\n1700000000,1\n1700000060,2\n");
        let mut src = source(&path, StartAt::Beginning);
        assert_eq!(tick(&mut src).await, (vec![1.0, 2.0], Backlog::LastTick), "the whole backlog in one tick");
        write(&path, "1700000120,3\n");
        assert_eq!(tick(&mut src).await, (vec![3.0], Backlog::None), "live rows after it");
    }
}
