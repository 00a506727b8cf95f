//! Syntax: source text → [`ast::File`].
//!
//! Input: the text of one file (already decoded; see [`decode`] for E0100).
//! Output: the AST, the file's comments (for the formatter) and syntax diagnostics.
//! Invariants: never panics and never recurses deeper than the bracket nesting bound
//! ([`scan::MAX_NESTING`]) or the expression depth bound ([`lower::MAX_EXPR_DEPTH`]),
//! whatever the input. After a syntax error, parsing resumes at the next top-level item,
//! so one run reports the syntax errors of every item.
//!
//! Codes: E0100–E0111.

pub mod ast;
pub mod lower;
pub mod parser;
pub mod print;
pub mod scan;

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{SourceId, Span};

pub use print::format;
pub use scan::Comment;

/// What parsing one file produced.
#[derive(Debug)]
pub struct Parsed {
    pub file: ast::File,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Decodes a file's bytes as UTF-8. Invalid UTF-8 gives the text with replacement
/// characters and an E0100 diagnostic at the first invalid byte, to be reported once the
/// file has a [`SourceId`].
pub fn decode(bytes: Vec<u8>) -> (String, Option<usize>) {
    match String::from_utf8(bytes) {
        Ok(s) => (s, None),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(at))
        }
    }
}

/// The E0100 diagnostic for a file whose first invalid byte is at `at`.
pub fn invalid_utf8(source: SourceId, at: usize) -> Diagnostic {
    // In the decoded text the invalid byte is a U+FFFD replacement character.
    Diagnostic::error(Code::E0100, Span::new(source, at, at + char::REPLACEMENT_CHARACTER.len_utf8()), "the file is not valid UTF-8")
        .with_label("this byte is not UTF-8")
        .with_help("save the file as UTF-8, or check that the path names a pipeline file")
}

/// Parses a text that is one expression (a condition's canonical text from a plan).
///
/// # Errors
/// The diagnostics when the text is not one well-formed expression.
pub fn parse_expr(text: &str) -> Result<ast::Expr, Vec<Diagnostic>> {
    use pest::Parser as _;
    let source = SourceId(u32::MAX);
    let scan = scan::scan(source, text);
    if !scan.diagnostics.is_empty() {
        return Err(scan.diagnostics);
    }
    let mut pairs =
        parser::VigilParser::parse(parser::Rule::expr_only, text).map_err(|e| vec![parser::error_to_diagnostic(&e, source, text, 0)])?;
    let pair = pairs.next().and_then(|p| p.into_inner().next()).expect("grammar: expr_only holds an expr");
    let mut diagnostics = Vec::new();
    let e = lower::Lower { source, text, comments: &scan.comments, offset: 0, diagnostics: &mut diagnostics }.lower_expr_pub(pair);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    Ok(e)
}

/// Files larger than this are parsed in chunks on several threads.
const PARALLEL_MIN: usize = 512 * 1024;

/// The size a chunk of whole items aims for. pest holds the tokens of everything it
/// parses at once; parsing a large file a chunk at a time bounds that memory.
const CHUNK: usize = 256 * 1024;

/// Parses one file.
///
/// The file is split at top-level items (found by [`scan`]) into chunks that are parsed
/// independently — in parallel for large files — so that a syntax error in one item does
/// not hide the errors of the others and a 50 MB file parses in bounded memory.
pub fn parse(source: SourceId, text: &str) -> Parsed {
    let scan = scan::scan(source, text);
    if !scan.diagnostics.is_empty() {
        return Parsed { file: ast::File { doc: Vec::new(), items: Vec::new() }, comments: scan.comments, diagnostics: scan.diagnostics };
    }
    let comments: &[Comment] = &scan.comments;
    let mut starts = scan.item_starts.clone();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    // Chunk boundaries: item starts at least CHUNK bytes apart.
    let mut bounds = vec![0];
    for &s in &starts[1..] {
        if s - bounds[bounds.len() - 1] >= CHUNK {
            bounds.push(s);
        }
    }
    bounds.push(text.len());
    let chunks: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
    let parse_range = |range: &[(usize, usize)]| -> Vec<(ast::File, Vec<Diagnostic>)> {
        range.iter().map(|&(a, b)| parse_chunk(source, text, a, b, &starts, comments)).collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chunks.len());
    let results: Vec<(ast::File, Vec<Diagnostic>)> = if text.len() < PARALLEL_MIN || threads < 2 {
        parse_range(&chunks)
    } else {
        let per = chunks.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks.chunks(per).map(|part| scope.spawn(move || parse_range(part))).collect();
            // A panic in a parser thread is a bug; re-raise it on this thread.
            handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    };
    let mut file = ast::File { doc: Vec::new(), items: Vec::new() };
    let mut diagnostics = Vec::new();
    for (i, (part, diags)) in results.into_iter().enumerate() {
        if i == 0 {
            file.doc = part.doc;
        }
        file.items.extend(part.items);
        diagnostics.extend(diags);
    }
    Parsed { file, comments: scan.comments, diagnostics }
}

/// Parses `text[start..end]`, whole items. On a syntax error, parses each of its items on
/// its own, so that every broken item is reported and the good ones are kept.
fn parse_chunk(
    source: SourceId,
    text: &str,
    start: usize,
    end: usize,
    item_starts: &[usize],
    comments: &[Comment],
) -> (ast::File, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    if let Ok(mut pairs) = parser::parse_file(&text[start..end]) {
        let pair = pairs.next().expect("grammar: a file");
        let file = lower::Lower { source, text, comments, offset: start, diagnostics: &mut diagnostics }.lower_file(pair);
        return (file, diagnostics);
    }
    let mut bounds: Vec<usize> = item_starts.iter().copied().filter(|&s| s > start && s < end).collect();
    bounds.insert(0, start);
    bounds.push(end);
    let mut file = ast::File { doc: Vec::new(), items: Vec::new() };
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        match parser::parse_file(&text[a..b]) {
            Ok(mut pairs) => {
                let pair = pairs.next().expect("grammar: a file");
                let part = lower::Lower { source, text, comments, offset: a, diagnostics: &mut diagnostics }.lower_file(pair);
                if a == start {
                    file.doc = part.doc;
                }
                file.items.extend(part.items);
            }
            Err(e) => diagnostics.push(parser::error_to_diagnostic(&e, source, text, a)),
        }
    }
    (file, diagnostics)
}
