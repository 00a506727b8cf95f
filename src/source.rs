//! Source files and spans.
//!
//! Every file the compiler reads — a user's pipeline or an embedded stdlib module — is
//! registered in a [`SourceMap`] and named by a [`SourceId`]. A [`Span`] is a byte range in
//! one source; diagnostics and the AST carry spans, never line numbers, and line/column are
//! computed only when something is shown to a person.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Identifies one file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SourceId(pub u32);

/// A byte range `start..end` in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub source: SourceId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// A span in `source` from `start` to `end` (byte offsets).
    pub fn new(source: SourceId, start: usize, end: usize) -> Span {
        Span { source, start: clamp_u32(start), end: clamp_u32(end.max(start)) }
    }

    /// The smallest span covering both. Both must be in the same source.
    pub fn to(self, other: Span) -> Span {
        debug_assert_eq!(self.source, other.source);
        Span { source: self.source, start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The empty span at this span's start.
    pub fn shrink_to_start(self) -> Span {
        Span { end: self.start, ..self }
    }

    /// The byte range as `usize`s.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A value with the span it was written at.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    /// Spans are ignored: two trees are equal when they say the same thing.
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}

/// Where a source file came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A file the user passed or imported.
    User,
    /// A module of the embedded standard library.
    Stdlib,
}

/// One source file: its name as shown in diagnostics, its text, and a line index.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub id: SourceId,
    /// The name shown in diagnostics: the path as given, or `stdlib/<module>.vigil`.
    pub name: String,
    /// The file on disk, when there is one (stdlib modules are embedded).
    pub path: Option<PathBuf>,
    pub origin: Origin,
    pub text: Arc<str>,
    line_starts: Vec<u32>,
}

impl SourceFile {
    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (usize, usize) {
        let offset = offset.min(self.text.len() as u32);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line] as usize;
        let mut end = offset as usize;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let col = self.text[start..end].chars().count();
        (line + 1, col + 1)
    }

    /// The text of a span.
    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }
}

/// All the files of one compilation.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, path: Option<&Path>, origin: Origin, text: impl Into<Arc<str>>) -> SourceId {
        let text: Arc<str> = text.into();
        let mut line_starts = vec![0u32];
        line_starts.extend(memchr_newlines(text.as_bytes()).map(|i| clamp_u32(i + 1)));
        let id = SourceId(self.files.len() as u32);
        self.files.push(SourceFile { id, name: name.into(), path: path.map(Path::to_path_buf), origin, text, line_starts });
        id
    }

    /// The file with this id.
    ///
    /// # Panics
    /// If the id was not issued by this map.
    pub fn get(&self, id: SourceId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// All files, in the order they were added.
    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.iter()
    }

    /// The file loaded from this path, if any.
    pub fn find_path(&self, path: &Path) -> Option<SourceId> {
        self.files.iter().find(|f| f.path.as_deref() == Some(path)).map(|f| f.id)
    }

    /// `file:line:col` of a span's start.
    pub fn location(&self, span: Span) -> String {
        let file = self.get(span.source);
        let (line, col) = file.line_col(span.start);
        format!("{}:{}:{}", file.name, line, col)
    }
}

fn memchr_newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i)
}
