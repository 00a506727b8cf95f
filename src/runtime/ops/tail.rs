//! Rotation-safe reading of a file that grows by appends (the `csv` and `jsonl` sources).
//!
//! A [`Tail`] follows a *path*, not a file: the file at the path may be replaced by
//! rotation while vigil runs or while it is stopped. Every row is read once:
//!
//! - **Identity.** The cursor records the file's device and inode and a fingerprint (FNV-1a
//!   of its first [`FP_MAX`] bytes, widened as the file grows). The file at the path is the
//!   one being read when all three match and it is at least as long as the offset.
//! - **Rename, or delete and recreate** (logrotate's `create`): the file at the path has
//!   another inode. The old file is drained from the offset to its end — through the handle
//!   kept open since the last tick (which reads a deleted file too), else found again by its
//!   inode among the files of the same directory — including a last line without a line
//!   break. Files rotated in between (two rotations between ticks) are siblings whose name
//!   starts like the path's and that were written after the old file: they are read whole,
//!   oldest first. Then the new file is read from its start.
//! - **copytruncate**: same inode, but shorter than the offset or with other first bytes.
//!   The copy is looked for among the siblings by the fingerprint and drained from the
//!   offset; then the file is read from its start.
//! - **What cannot be found is counted**: when the rest of a rotated file is gone (deleted
//!   while vigil was stopped, compressed, or a copytruncate whose copy is not beside it),
//!   `vigil_source_lost_rows_total{reason="rotated_file_missing"}` counts the event once
//!   (how many rows it held is unknowable) and a warning says which file and offset.
//!   copytruncate's own race — rows written between the copy and the truncation — cannot
//!   be seen by any reader.
//!
//! - **Where a new cursor starts** ([`StartAt`]): a file met for the first time (no cursor
//!   in the store) is read from its beginning, or from the end of its last whole line — a
//!   CSV's header line is still read, so that later rows have their columns. A file that
//!   does not exist yet at the first read is read from its beginning when it appears. A
//!   file read from its beginning at the first start holds a *backlog*: the ticks that
//!   read up to its length then say so ([`crate::runtime::Backlog`]), and respond stages
//!   hold their notifications until it is read.
//!
//! A file still being appended to is read in whole lines; a partial last line waits for
//! the next tick. At most [`MAX_READ`] bytes are read per tick; a backlog of rotated files
//! is drained over as many ticks as it needs, and is part of the cursor, so a restart
//! goes on where it stopped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::runtime::{Backlog, OpCtx, OpError};

/// The most bytes a file source reads in one tick.
pub const MAX_READ: usize = 64 << 20;

/// The most bytes the fingerprint covers.
pub const FP_MAX: u64 = 256;

/// A file's identity on this machine.
type FileId = (u64, u64);

/// Where reading one file stands: persisted in the source's cursor.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
pub struct FilePos {
    /// Bytes consumed (always just after a line break, or the file's end once drained).
    pub offset: u64,
    /// The first line, for sources that read one (CSV's header).
    #[serde(default)]
    pub header: Option<Vec<String>>,
    #[serde(default)]
    pub dev: u64,
    /// 0: not known yet (a new cursor, or one written before rotation was tracked).
    #[serde(default)]
    pub ino: u64,
    /// How many leading bytes `fp` covers.
    #[serde(default)]
    pub fp_len: u64,
    #[serde(default)]
    pub fp: u64,
}

impl FilePos {
    fn id(&self) -> FileId {
        (self.dev, self.ino)
    }

    fn fresh(id: FileId) -> FilePos {
        FilePos { dev: id.0, ino: id.1, ..FilePos::default() }
    }
}

/// The whole cursor: the current file and rotated files still to drain, oldest first.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
pub struct TailState {
    #[serde(flatten)]
    pub current: FilePos,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backlog: Vec<FilePos>,
}

/// Which file a chunk came from, to find its parser state in [`TailRead::next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A rotated file read to its end in this tick.
    Drained,
    /// `next.backlog[i]`: a rotated file with more to read on a later tick.
    Backlog(usize),
    /// `next.current`.
    Current,
}

/// Whole lines of one file.
#[derive(Debug)]
pub struct Chunk {
    pub text: String,
    pub slot: Slot,
    /// The file's header as known before this chunk (None: the chunk starts the file).
    pub header: Option<Vec<String>>,
    /// Lines of the chunk that were not valid UTF-8 (decoded lossily: each bad byte is
    /// U+FFFD).
    pub invalid_utf8: u64,
}

impl Chunk {
    fn new(buf: &[u8], slot: Slot, header: Option<Vec<String>>) -> Chunk {
        let invalid_utf8 = match std::str::from_utf8(buf) {
            Ok(_) => 0,
            Err(_) => buf.split(|&b| b == b'\n').filter(|l| std::str::from_utf8(l).is_err()).count() as u64,
        };
        Chunk { text: String::from_utf8_lossy(buf).into_owned(), slot, header, invalid_utf8 }
    }
}

/// What one tick read, and the cursor to commit once it has been used.
#[derive(Debug)]
pub struct TailRead {
    pub chunks: Vec<Chunk>,
    pub next: TailState,
}

impl TailRead {
    /// The parser state of the file a chunk came from, in the cursor to commit.
    pub fn header_mut(&mut self, slot: Slot) -> Option<&mut Option<Vec<String>>> {
        match slot {
            Slot::Drained => None,
            Slot::Backlog(i) => self.next.backlog.get_mut(i).map(|p| &mut p.header),
            Slot::Current => Some(&mut self.next.current.header),
        }
    }
}

/// Where a source starts in a file it meets for the first time (no cursor yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Its first line: what the file holds is read, as a backlog.
    Beginning,
    /// After its last whole line: only lines written from then on.
    End,
}

impl StartAt {
    /// The `start_at` parameter: `"beginning"`, `"end"`, or unset — the end under
    /// `vigil run` (`live`), so that a first start never pages about the past, and the
    /// beginning for `replay`, `eval` and `test`.
    pub fn from_param(value: &str, live: bool) -> StartAt {
        match value {
            "beginning" => StartAt::Beginning,
            "end" => StartAt::End,
            _ if live => StartAt::End,
            _ => StartAt::Beginning,
        }
    }
}

/// Follows one path across rotations.
pub struct Tail {
    pub path: PathBuf,
    pub state: TailState,
    /// Where a new cursor starts.
    pub start_at: StartAt,
    /// The file's first line is a header (CSV): read even when starting at the end.
    pub header_line: bool,
    /// Whether the start is settled: a cursor was restored, or the first read happened.
    started: bool,
    /// A file read from its beginning at the first start: its identity and its length
    /// then. The ticks that read up to there read a backlog.
    backlog_mark: Option<(FileId, u64)>,
    /// Open handles of the files in `state`, so a file renamed or deleted since the last
    /// tick can still be drained. Not persisted.
    handles: HashMap<FileId, File>,
    /// The most bytes read per tick ([`MAX_READ`] unless the source says otherwise); a
    /// line longer than this is skipped (counted).
    pub max_read: usize,
}

/// Things seen while reading, reported on the async side.
#[derive(Default)]
struct Report {
    warnings: Vec<String>,
    lost: Vec<(&'static str, u64)>,
    skipped_bytes: u64,
    max_read: usize,
}

impl Tail {
    pub fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            state: TailState::default(),
            start_at: StartAt::Beginning,
            header_line: false,
            started: false,
            backlog_mark: None,
            handles: HashMap::new(),
            max_read: MAX_READ,
        }
    }

    /// Restores a persisted cursor (the forms written by this and earlier versions).
    pub fn restore(&mut self, cursor: &str) {
        match serde_json::from_str(cursor) {
            Ok(s) => {
                self.state = s;
                self.handles.clear();
                self.started = true;
            }
            Err(e) => tracing::warn!(file = %self.path.display(), error = %e, "ignoring an unreadable cursor"),
        }
    }

    pub fn save(&self) -> Option<String> {
        serde_json::to_string(&self.state).ok()
    }

    /// Commits what [`Tail::read`] returned once its rows have been used.
    pub fn commit(&mut self, next: TailState) {
        if self.backlog_mark.is_some_and(|mark| backlog_read(mark, &next)) {
            self.backlog_mark = None;
        }
        let keep: Vec<FileId> = std::iter::once(next.current.id()).chain(next.backlog.iter().map(FilePos::id)).collect();
        self.handles.retain(|id, _| keep.contains(id));
        self.state = next;
    }

    /// Reads what was written since the cursor, off the async threads. Nothing is
    /// committed: call [`Tail::commit`] with `next` once the rows are used, so a failed
    /// tick reads the same rows again.
    ///
    /// # Errors
    /// The path cannot be opened and no rotated file is left to drain; an I/O error.
    pub async fn read(&mut self, ctx: &mut OpCtx) -> Result<TailRead, OpError> {
        let path = self.path.clone();
        let first = (!self.started && self.state == TailState::default()).then_some((self.start_at, self.header_line));
        self.started = true;
        let state = self.state.clone();
        let handles = std::mem::take(&mut self.handles);
        let max_read = self.max_read.max(1);
        let (result, start, handles, report) = tokio::task::spawn_blocking(move || {
            let mut handles = handles;
            let mut report = Report { max_read, ..Report::default() };
            let start = first.and_then(|(at, header)| first_start(&path, at, header));
            let state = start.as_ref().and_then(|s| s.state.clone()).unwrap_or(state);
            let mut r = read_blocking(&path, state, &mut handles, &mut report);
            if let (Ok(read), Some(header)) = (&mut r, start.as_ref().and_then(|s| s.header.as_ref())) {
                // The header line first, in the chunk that starts the file's rows.
                match read.chunks.iter_mut().find(|c| c.slot == Slot::Current && c.header.is_none()) {
                    Some(c) => c.text.insert_str(0, header),
                    None => read.chunks.push(Chunk::new(header.as_bytes(), Slot::Current, None)),
                }
            }
            (r, start, handles, report)
        })
        .await
        .map_err(|e| OpError::Io(e.to_string()))?;
        self.handles = handles;
        if let Some(start) = start {
            match (start.state.as_ref(), start.mark) {
                (Some(s), _) => tracing::info!(
                    file = %self.path.display(),
                    skipped_bytes = s.current.offset,
                    "starting at the end of the file (start_at: \"end\"): only lines written from now on are read"
                ),
                (None, Some((_, len))) => {
                    tracing::info!(
                        file = %self.path.display(),
                        bytes = len,
                        "reading what the file holds first (start_at: \"beginning\"): notifications are held until it is read, \
                         then only incidents still open are notified"
                    );
                    self.backlog_mark = Some(start.mark.unwrap_or_default());
                }
                (None, None) => {}
            }
        }
        for w in &report.warnings {
            tracing::warn!(file = %self.path.display(), "{w}");
        }
        for (reason, n) in report.lost {
            ctx.lose(reason, n);
        }
        if report.skipped_bytes > 0 {
            ctx.skip("malformed_row");
            tracing::warn!(file = %self.path.display(), bytes = report.skipped_bytes, "skipped bytes without a line break");
        }
        let read = result?;
        if let Some(mark) = self.backlog_mark {
            ctx.backlog = ctx.backlog.max(if backlog_read(mark, &read.next) { Backlog::LastTick } else { Backlog::Reading });
        }
        Ok(read)
    }
}

/// Whether a cursor has read a first start's backlog: past the file's length then, or
/// onto another file.
fn backlog_read((id, len): (FileId, u64), next: &TailState) -> bool {
    let cur = &next.current;
    (cur.ino != 0 && cur.id() != id) || (cur.id() == id && cur.offset >= len && next.backlog.is_empty())
}

/// How a new cursor starts in the file at `path`.
struct FirstStart {
    /// The cursor to read from (None: the file's beginning).
    state: Option<TailState>,
    /// The header line, read even when starting at the end.
    header: Option<String>,
    /// Read from its beginning: the backlog's file and length.
    mark: Option<(FileId, u64)>,
}

/// Where a new cursor starts (None: the file's beginning, nothing to say — the file is not
/// there yet, or empty).
fn first_start(path: &Path, at: StartAt, header_line: bool) -> Option<FirstStart> {
    let mut f = File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    let (id, len) = (id_of(&meta), meta.len());
    if len == 0 {
        return None;
    }
    if at == StartAt::Beginning {
        return Some(FirstStart { state: None, header: None, mark: Some((id, len)) });
    }
    // The end of the last whole line (a partial last line is still being written: it is
    // read once whole).
    let back = len.min(1 << 20);
    let mut tail = vec![0u8; back as usize];
    f.seek(SeekFrom::Start(len - back)).ok()?;
    f.read_exact(&mut tail).ok()?;
    let end = match memchr::memrchr(b'\n', &tail) {
        Some(i) => len - back + i as u64 + 1,
        None if back == len => return None,
        None => len,
    };
    let header = if header_line {
        f.seek(SeekFrom::Start(0)).ok()?;
        let mut first = Vec::new();
        let mut reader = std::io::BufReader::new((&mut f).take(1 << 20));
        std::io::BufRead::read_until(&mut reader, b'\n', &mut first).ok()?;
        Some(String::from_utf8_lossy(&first).into_owned())
    } else {
        None
    };
    let mut pos = FilePos::fresh(id);
    pos.offset = end;
    widen_fingerprint(&mut f, &mut pos, len).ok()?;
    Some(FirstStart { state: Some(TailState { current: pos, backlog: Vec::new() }), header, mark: None })
}

/// FNV-1a over the first `len` bytes of `f`; None when it is shorter.
fn fingerprint(f: &mut File, len: u64) -> std::io::Result<Option<u64>> {
    if len == 0 {
        return Ok(Some(0));
    }
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(0))?;
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    Ok(Some(buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))))
}

fn id_of(meta: &std::fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> OpError {
    OpError::Io(format!("cannot {what} `{}`: {e}", path.display()))
}

/// Whether `n` names a rotated copy of the file `name`: `name` plus a suffix
/// (`app.log.1`, `app.log-20261202`), or its stem and extension around a marker with a
/// digit (`app.1.log`, `app-2026-12-02.log`). Another source's file beside it (`app.jsonl`,
/// `app2.log`) is not one.
pub fn is_rotation_of(n: &str, name: &str) -> bool {
    if n == name || [".gz", ".zst", ".bz2", ".xz", ".zip"].iter().any(|x| n.ends_with(x)) {
        return false;
    }
    if let Some(rest) = n.strip_prefix(name) {
        return rest.starts_with(['.', '-', '_']) && rest.len() > 1;
    }
    let (stem, ext) = name.rsplit_once('.').map_or((name, ""), |(s, e)| (s, e));
    let Some(rest) = n.strip_prefix(stem) else { return false };
    let middle = if ext.is_empty() { Some(rest) } else { rest.strip_suffix(ext).and_then(|m| m.strip_suffix('.')) };
    middle.is_some_and(|m| m.starts_with(['.', '-', '_']) && m.bytes().any(|b| b.is_ascii_digit()))
}

/// Regular files beside `path` that are rotated copies of it ([`is_rotation_of`]), with
/// their metadata; compressed ones are left out (they cannot be read as text).
fn siblings(path: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(n) = file_name.to_str() else { continue };
        if !is_rotation_of(n, name) {
            continue;
        }
        let p = e.path();
        if let Ok(meta) = std::fs::metadata(&p) {
            if meta.is_file() {
                out.push((p, meta));
            }
        }
    }
    out
}

/// Reads from `pos.offset` to the end (`drain`: the file no longer grows, a last line
/// without a break is a line) or to the last line break, within `budget`. Returns the
/// text and whether the file was read to its end.
fn read_from(f: &mut File, pos: &mut FilePos, budget: &mut usize, drain: bool, report: &mut Report) -> std::io::Result<(Vec<u8>, bool)> {
    let len = f.metadata()?.len();
    if len <= pos.offset || *budget == 0 {
        return Ok((Vec::new(), len <= pos.offset));
    }
    f.seek(SeekFrom::Start(pos.offset))?;
    let want = ((len - pos.offset) as usize).min(*budget);
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf)?;
    let all = want as u64 == len - pos.offset;
    if drain && all {
        pos.offset = len;
        *budget -= want;
        if buf.last() != Some(&b'\n') {
            buf.push(b'\n');
        }
        return Ok((buf, true));
    }
    match memchr::memrchr(b'\n', &buf) {
        Some(i) => {
            buf.truncate(i + 1);
            pos.offset += i as u64 + 1;
            *budget -= i + 1;
            Ok((buf, false))
        }
        // A full read with no line break is no line anyone is writing: skip it (counted)
        // so that the source moves on.
        None if want == report.max_read => {
            pos.offset += want as u64;
            *budget -= want;
            report.skipped_bytes += want as u64;
            Ok((Vec::new(), false))
        }
        None => Ok((Vec::new(), false)),
    }
}

/// Widens the fingerprint of the current file to what it now holds (up to [`FP_MAX`]).
fn widen_fingerprint(f: &mut File, pos: &mut FilePos, len: u64) -> std::io::Result<()> {
    let want = len.min(FP_MAX);
    if want > pos.fp_len {
        if let Some(fp) = fingerprint(f, want)? {
            pos.fp = fp;
            pos.fp_len = want;
        }
    }
    Ok(())
}

/// Opens a rotated file of the backlog: its kept handle, else a sibling with its inode.
fn open_rotated(path: &Path, pos: &FilePos, handles: &mut HashMap<FileId, File>) -> Option<File> {
    if let Some(f) = handles.remove(&pos.id()) {
        return Some(f);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(meta) = std::fs::metadata(e.path()) {
            if meta.is_file() && id_of(&meta) == pos.id() {
                return File::open(e.path()).ok();
            }
        }
    }
    None
}

fn read_blocking(path: &Path, mut state: TailState, handles: &mut HashMap<FileId, File>, report: &mut Report) -> Result<TailRead, OpError> {
    let opened = File::open(path).and_then(|f| f.metadata().map(|m| (f, m)));
    let (mut file, meta) = match opened {
        Ok(x) => x,
        Err(e) => {
            // Deleted and not recreated yet: what is still readable through the kept
            // handle is read; the rest waits for the file to appear.
            if state.current.ino != 0 {
                if let Some(mut f) = handles.remove(&state.current.id()) {
                    let mut budget = report.max_read;
                    let header = state.current.header.clone();
                    let (buf, _) =
                        read_from(&mut f, &mut state.current, &mut budget, false, report).map_err(|e| io_err("read", path, e))?;
                    handles.insert(state.current.id(), f);
                    let chunks = if buf.is_empty() { Vec::new() } else { vec![Chunk::new(&buf, Slot::Current, header)] };
                    return Ok(TailRead { chunks, next: state });
                }
            }
            return Err(io_err("open", path, e));
        }
    };
    let id = id_of(&meta);
    let len = meta.len();
    let cur = &state.current;
    if cur.ino == 0 {
        // A new cursor, or one from before rotation was tracked (offset only).
        if len < cur.offset {
            report.warnings.push("the file is shorter than what was read: reading it again from the start".into());
            state.current = FilePos::fresh(id);
        } else {
            state.current.dev = id.0;
            state.current.ino = id.1;
        }
    } else {
        let same_content = cur.fp_len == 0
            || (len >= cur.fp_len && fingerprint(&mut file, cur.fp_len).map_err(|e| io_err("read", path, e))? == Some(cur.fp));
        if id != cur.id() {
            rotated(path, &mut state, id, handles, report);
        } else if !same_content || len < cur.offset {
            copy_truncated(path, &mut state, id, handles, report);
        }
    }

    // Drain the backlog, oldest first, then read the current file.
    let mut budget = report.max_read;
    let mut chunks = Vec::new();
    let mut backlog = Vec::new();
    let pending = std::mem::take(&mut state.backlog);
    let mut blocked = false;
    for mut pos in pending {
        if blocked {
            backlog.push(pos);
            continue;
        }
        let Some(mut f) = open_rotated(path, &pos, handles) else {
            report
                .warnings
                .push(format!("a rotated file (inode {}) with unread rows from byte {} is gone; those rows are lost", pos.ino, pos.offset));
            report.lost.push(("rotated_file_missing", 1));
            continue;
        };
        let header = pos.header.clone();
        let (buf, done) = read_from(&mut f, &mut pos, &mut budget, true, report).map_err(|e| io_err("read", path, e))?;
        let slot = if done { Slot::Drained } else { Slot::Backlog(backlog.len()) };
        if !buf.is_empty() {
            chunks.push(Chunk::new(&buf, slot, header));
        }
        if !done {
            handles.insert(pos.id(), f);
            backlog.push(pos);
            blocked = true;
        }
    }
    state.backlog = backlog;
    if !blocked {
        let header = state.current.header.clone();
        let (buf, _) = read_from(&mut file, &mut state.current, &mut budget, false, report).map_err(|e| io_err("read", path, e))?;
        if !buf.is_empty() {
            chunks.push(Chunk::new(&buf, Slot::Current, header));
        }
    }
    let now_len = len.max(state.current.offset);
    widen_fingerprint(&mut file, &mut state.current, now_len).map_err(|e| io_err("read", path, e))?;
    handles.insert(id, file);
    Ok(TailRead { chunks, next: state })
}

/// The path holds another file: the old one joins the backlog (if it still exists), and
/// so do files rotated after it; the new one is read from its start.
fn rotated(path: &Path, state: &mut TailState, new_id: FileId, handles: &mut HashMap<FileId, File>, report: &mut Report) {
    let old = std::mem::replace(&mut state.current, FilePos::fresh(new_id));
    let known: Vec<FileId> = std::iter::once(old.id()).chain(state.backlog.iter().map(FilePos::id)).chain([new_id]).collect();
    // The old file's last write: files written after it were rotated after it.
    let old_mtime = match open_rotated(path, &old, handles) {
        Some(f) => {
            let m = f.metadata().ok().map(|m| (m.mtime(), m.mtime_nsec()));
            handles.insert(old.id(), f);
            state.backlog.push(old);
            m
        }
        None => {
            report.warnings.push(format!(
                "the file was rotated and the old one (inode {}) is gone: rows after byte {} may be lost",
                old.ino, old.offset
            ));
            report.lost.push(("rotated_file_missing", 1));
            None
        }
    };
    report.warnings.push("the file was rotated: reading the rest of the old file, then the new one from its start".into());
    if let Some(old_mtime) = old_mtime {
        let mut between: Vec<_> =
            siblings(path).into_iter().filter(|(_, m)| !known.contains(&id_of(m)) && (m.mtime(), m.mtime_nsec()) >= old_mtime).collect();
        between.sort_by_key(|(_, m)| (m.mtime(), m.mtime_nsec()));
        for (p, m) in between {
            if let Ok(f) = File::open(&p) {
                report.warnings.push(format!("reading `{}`, rotated since the last read", p.display()));
                handles.insert(id_of(&m), f);
                state.backlog.push(FilePos::fresh(id_of(&m)));
            }
        }
    }
}

/// Same inode, other content (copytruncate): the copy beside it is drained from the
/// offset, then the file is read from its start.
fn copy_truncated(path: &Path, state: &mut TailState, id: FileId, handles: &mut HashMap<FileId, File>, report: &mut Report) {
    let old = std::mem::replace(&mut state.current, FilePos::fresh(id));
    handles.remove(&id);
    report.warnings.push("the file was truncated or rewritten: reading it again from the start".into());
    if old.offset == 0 || old.fp_len == 0 {
        return;
    }
    let mut copies: Vec<_> = siblings(path)
        .into_iter()
        .filter(|(_, m)| m.len() >= old.offset && !state.backlog.iter().any(|b| b.id() == id_of(m)))
        .filter_map(|(p, m)| {
            let mut f = File::open(&p).ok()?;
            (fingerprint(&mut f, old.fp_len).ok()?? == old.fp).then_some((p, m, f))
        })
        .collect();
    copies.sort_by_key(|(_, m, _)| std::cmp::Reverse((m.mtime(), m.mtime_nsec())));
    match copies.into_iter().next() {
        Some((p, m, f)) => {
            report.warnings.push(format!("reading the rest of its copy `{}`", p.display()));
            handles.insert(id_of(&m), f);
            state.backlog.push(FilePos { dev: m.dev(), ino: m.ino(), ..old });
        }
        None => {
            report.warnings.push(format!("no copy of the old content found beside it: rows after byte {} may be lost", old.offset));
            report.lost.push(("rotated_file_missing", 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_rotation_of;

    #[test]
    fn rotated_copies_and_other_files() {
        for n in ["app.log.1", "app.log-20261202", "app.log_old", "app.1.log", "app-2026-12-02.log"] {
            assert!(is_rotation_of(n, "app.log"), "{n}");
        }
        for n in ["app.log", "app.jsonl", "app2.log", "app.log.1.gz", "apple.log", "app.log.", "app-old.log"] {
            assert!(!is_rotation_of(n, "app.log"), "{n}");
        }
        assert!(is_rotation_of("data.1", "data") && !is_rotation_of("database", "data"));
    }
}
