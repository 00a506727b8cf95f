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

/// Parses one file.
pub fn parse(source: SourceId, text: &str) -> Parsed {
    let scan = scan::scan(source, text);
    let mut diagnostics = scan.diagnostics;
    let mut file = ast::File { doc: Vec::new(), items: Vec::new() };
    if !diagnostics.is_empty() {
        return Parsed { file, comments: scan.comments, diagnostics };
    }
    match parser::parse_file(text) {
        Ok(mut pairs) => {
            let pair = pairs.next().expect("grammar: a file");
            file = lower::Lower { source, offset: 0, diagnostics: &mut diagnostics }.lower_file(pair);
        }
        Err(_) => {
            // Parse each top-level item on its own so that every broken item is reported
            // and the good ones are kept.
            let mut bounds = scan.item_starts.clone();
            if bounds.first() != Some(&0) {
                bounds.insert(0, 0);
            }
            bounds.push(text.len());
            for w in bounds.windows(2) {
                let (start, end) = (w[0], w[1]);
                let chunk = &text[start..end];
                match parser::parse_file(chunk) {
                    Ok(mut pairs) => {
                        let pair = pairs.next().expect("grammar: a file");
                        let part = lower::Lower { source, offset: start, diagnostics: &mut diagnostics }.lower_file(pair);
                        if start == 0 {
                            file.doc = part.doc;
                        }
                        file.items.extend(part.items);
                    }
                    Err(e) => diagnostics.push(parser::error_to_diagnostic(&e, source, text, start)),
                }
            }
        }
    }
    Parsed { file, comments: scan.comments, diagnostics }
}
