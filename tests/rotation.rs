//! File sources across rotation: every row is read once whatever the rotation (rename,
//! copytruncate, delete and recreate, two rotations between ticks, a rotation while the
//! engine is stopped), and what cannot be read is counted.

mod common;

use std::io::Write;
use std::path::Path;

use common::TempDir;
use vigil::data::Data;
use vigil::runtime::ops::collect::{CsvSource, JsonlSource};
use vigil::runtime::{OpCtx, Source};

/// Appends CSV rows `from..to` (timestamp = row number in seconds, value = row number).
fn append(path: &Path, from: u64, to: u64) {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    if new {
        writeln!(f, "timestamp,value").unwrap();
    }
    for i in from..to {
        writeln!(f, "{},{}", 1_700_000_000 + i, i).unwrap();
    }
}

fn csv(path: &Path) -> CsvSource {
    CsvSource::new(path.to_path_buf(), "timestamp".into(), vec!["value".into()], vec![])
}

/// One tick: the values read and the context (skips, losses).
async fn tick(src: &mut dyn Source) -> (Vec<u64>, OpCtx) {
    let mut ctx = OpCtx::new(0);
    let data = src.collect(&mut ctx).await.expect("the tick succeeds");
    let Data::Series(s) = data else { panic!("series expected") };
    let values = s.series.iter().flat_map(|c| c.values.iter().map(|v| *v as u64)).collect();
    (values, ctx)
}

fn lost(ctx: &OpCtx) -> u64 {
    ctx.lost.iter().map(|(_, n)| n).sum()
}

#[tokio::test]
async fn rename_and_new_file_reads_the_old_rest_then_the_new_file_from_its_start() {
    let dir = TempDir::new("rot-rename");
    let path = dir.join("r.csv");
    append(&path, 0, 10);
    let mut src = csv(&path);
    assert_eq!(tick(&mut src).await.0, (0..10).collect::<Vec<_>>());
    // Rows appended just before the rename, then a new file at least as long whose first
    // row holds the spike.
    append(&path, 10, 15);
    std::fs::rename(&path, dir.join("r.csv.1")).unwrap();
    append(&path, 15, 40);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, (10..40).collect::<Vec<_>>(), "every row once, in order");
    assert_eq!(lost(&ctx), 0);
    append(&path, 40, 42);
    assert_eq!(tick(&mut src).await.0, vec![40, 41]);
}

#[tokio::test]
async fn copytruncate_drains_the_copy_then_reads_the_file_again() {
    let dir = TempDir::new("rot-copytruncate");
    let path = dir.join("r.csv");
    append(&path, 0, 10);
    let mut src = csv(&path);
    assert_eq!(tick(&mut src).await.0.len(), 10);
    append(&path, 10, 12);
    std::fs::copy(&path, dir.join("r.csv.1")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    // The writer goes on in the same file, past the old length before the next tick: an
    // offset alone would miss the start.
    writeln!(std::fs::OpenOptions::new().append(true).open(&path).unwrap(), "timestamp,value").unwrap();
    append(&path, 12, 60);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, (10..60).collect::<Vec<_>>());
    assert_eq!(lost(&ctx), 0);
}

#[tokio::test]
async fn truncation_in_place_without_a_copy_is_counted_as_lost() {
    let dir = TempDir::new("rot-truncate");
    let path = dir.join("r.csv");
    append(&path, 0, 10);
    let mut src = csv(&path);
    tick(&mut src).await;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    // The same inode, written again from the start: no copy anywhere.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "timestamp,value").unwrap();
    drop(f);
    append(&path, 100, 130);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, (100..130).collect::<Vec<_>>());
    assert_eq!(lost(&ctx), 1, "the rotation whose rest is gone is counted");
}

#[tokio::test]
async fn delete_and_recreate_drains_the_deleted_file_through_its_handle() {
    let dir = TempDir::new("rot-delete");
    let path = dir.join("r.jsonl");
    let write = |from: u64, to: u64| {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        for i in from..to {
            writeln!(f, r#"{{"ts": {}, "v": {i}}}"#, 1_700_000_000 + i).unwrap();
        }
    };
    write(0, 5);
    let mut src = JsonlSource::new(path.clone(), "ts".into(), "v".into(), vec![]);
    assert_eq!(tick(&mut src).await.0.len(), 5);
    write(5, 8);
    std::fs::remove_file(&path).unwrap();
    // Deleted and not yet recreated: what is still readable is read.
    let (values, _) = tick(&mut src).await;
    assert_eq!(values, vec![5, 6, 7]);
    write(8, 20);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, (8..20).collect::<Vec<_>>());
    assert_eq!(lost(&ctx), 0);
}

#[tokio::test]
async fn two_rotations_between_ticks_read_the_file_in_between_too() {
    let dir = TempDir::new("rot-twice");
    let path = dir.join("r.csv");
    append(&path, 0, 5);
    let mut src = csv(&path);
    tick(&mut src).await;
    append(&path, 5, 7);
    std::fs::rename(&path, dir.join("r.csv.1")).unwrap();
    append(&path, 7, 12);
    std::fs::rename(dir.join("r.csv.1"), dir.join("r.csv.2")).unwrap();
    std::fs::rename(&path, dir.join("r.csv.1")).unwrap();
    append(&path, 12, 15);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, (5..15).collect::<Vec<_>>());
    assert_eq!(lost(&ctx), 0);
}

#[tokio::test]
async fn a_rotation_while_stopped_is_found_by_its_inode_after_a_restart() {
    let dir = TempDir::new("rot-restart");
    let path = dir.join("r.csv");
    append(&path, 0, 5);
    let mut src = csv(&path);
    tick(&mut src).await;
    let cursor = src.cursor().unwrap();
    drop(src);
    append(&path, 5, 9);
    std::fs::rename(&path, dir.join("r.csv.1")).unwrap();
    append(&path, 9, 30);
    let mut src = csv(&path);
    src.restore(&cursor);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, (5..30).collect::<Vec<_>>());
    assert_eq!(lost(&ctx), 0);

    // Rotated away and deleted while stopped: the loss is counted, the new file read.
    let cursor = src.cursor().unwrap();
    drop(src);
    append(&path, 30, 33);
    std::fs::remove_file(&path).unwrap();
    append(&path, 100, 103);
    let mut src = csv(&path);
    src.restore(&cursor);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, vec![100, 101, 102]);
    assert_eq!(lost(&ctx), 1);
}

#[tokio::test]
async fn a_cursor_written_before_rotation_tracking_still_resumes() {
    let dir = TempDir::new("rot-legacy");
    let path = dir.join("r.csv");
    append(&path, 0, 5);
    let header_and_five = std::fs::metadata(&path).unwrap().len();
    let mut src = csv(&path);
    src.restore(&format!(r#"{{"offset": {header_and_five}, "header": ["timestamp", "value"]}}"#));
    append(&path, 5, 7);
    assert_eq!(tick(&mut src).await.0, vec![5, 6]);
}

#[tokio::test]
async fn another_file_beside_it_is_not_taken_for_a_rotated_copy() {
    let dir = TempDir::new("rot-neighbour");
    let path = dir.join("r.csv");
    append(&path, 0, 5);
    let mut src = csv(&path);
    tick(&mut src).await;
    append(&path, 5, 7);
    std::fs::rename(&path, dir.join("r.csv.1")).unwrap();
    // Written after the rotation, but another source's file.
    append(&dir.join("r2.csv"), 500, 510);
    append(&dir.join("r.jsonl.csv"), 600, 610);
    append(&path, 7, 9);
    let (values, ctx) = tick(&mut src).await;
    assert_eq!(values, (5..9).collect::<Vec<_>>());
    assert_eq!(lost(&ctx), 0);
}
