//! A lexical pre-pass that runs before the pest grammar.
//!
//! pest parses recursively, so input nested 100 000 brackets deep would overflow the stack
//! before the grammar could object. This scan walks the bytes once, iteratively, and
//! - checks that `(`, `[`, `{` are balanced and nested at most [`MAX_NESTING`] deep
//!   (E0103, E0109, E0110) and that strings are terminated (E0102);
//! - collects the `//` comments, which the AST does not hold, for the formatter;
//! - finds where top-level items start, so that after a syntax error the parser can
//!   resume at the next item and report the errors of every item at once.

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{SourceId, Span};

/// The deepest nesting of brackets accepted.
pub const MAX_NESTING: usize = 64;

/// A plain `//` comment (doc comments are part of the AST).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    /// The comment's text including the leading `//`, trailing whitespace trimmed.
    pub text: String,
    /// Whether only whitespace precedes the comment on its line.
    pub own_line: bool,
}

/// What the scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
    /// Byte offsets where top-level items may start (line starts at depth 0 that begin
    /// with `use`, `pipeline`, `stage` or a doc comment that is not continued from above).
    pub item_starts: Vec<usize>,
}

/// Scans `text` (the file `source`).
pub fn scan(source: SourceId, text: &str) -> Scan {
    let bytes = text.as_bytes();
    let mut out = Scan::default();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut i = 0;
    let mut line_start = true;
    let mut prev_line_doc = false;
    while i < bytes.len() {
        let b = bytes[i];
        if line_start && stack.is_empty() {
            let rest = &bytes[i..];
            let starts_item = ["use", "pipeline", "stage", "test"].iter().any(|kw| starts_with_word(rest, kw));
            let is_doc = rest.starts_with(b"///") && !rest.starts_with(b"////");
            if (starts_item || is_doc) && !prev_line_doc {
                out.item_starts.push(i);
            }
            prev_line_doc = is_doc;
        }
        line_start = false;
        match b {
            b'\n' => line_start = true,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = bytes[i..].iter().position(|&c| c == b'\n').map_or(bytes.len(), |p| i + p);
                let raw = &text[i..end];
                let is_doc = (raw.starts_with("///") && !raw.starts_with("////")) || raw.starts_with("//!");
                if !is_doc {
                    let own_line = text[..i].rsplit('\n').next().is_none_or(|s| s.trim().is_empty());
                    let trimmed = raw.trim_end();
                    out.comments.push(Comment { span: Span::new(source, i, i + trimmed.len()), text: trimmed.to_owned(), own_line });
                }
                i = end;
                continue;
            }
            b'"' => {
                let start = i;
                i += 1;
                let mut closed = false;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            closed = true;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if !closed {
                    out.diagnostics.push(
                        Diagnostic::error(Code::E0102, Span::new(source, start, start + 1), "unterminated string")
                            .with_label("this string is never closed")
                            .with_help("add the closing `\"`; write `\\\"` for a quote inside a string"),
                    );
                    return out;
                }
            }
            b'(' | b'[' | b'{' => {
                if stack.len() >= MAX_NESTING {
                    out.diagnostics.push(
                        Diagnostic::error(Code::E0103, Span::new(source, i, i + 1), format!("nesting deeper than {MAX_NESTING} levels"))
                            .with_label("this delimiter is too deep")
                            .with_secondary(Span::new(source, stack[0].1, stack[0].1 + 1), "the outermost level opens here")
                            .with_help("flatten the expression, or split it into stages"),
                    );
                    return out;
                }
                stack.push((b, i));
            }
            b')' | b']' | b'}' => {
                let want = match b {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                match stack.pop() {
                    Some((open, _)) if open == want => {}
                    Some((open, at)) => {
                        out.diagnostics.push(
                            Diagnostic::error(Code::E0110, Span::new(source, i, i + 1), format!("unexpected `{}`", b as char))
                                .with_label(format!("expected `{}` here", closer(open)))
                                .with_secondary(Span::new(source, at, at + 1), format!("this `{}` is still open", open as char))
                                .with_help(format!("close the `{}` first, or remove this `{}`", open as char, b as char)),
                        );
                        return out;
                    }
                    None => {
                        out.diagnostics.push(
                            Diagnostic::error(Code::E0110, Span::new(source, i, i + 1), format!("unexpected `{}`", b as char))
                                .with_label("nothing is open here")
                                .with_help("remove it"),
                        );
                        return out;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(&(open, at)) = stack.last() {
        out.diagnostics.push(
            Diagnostic::error(Code::E0109, Span::new(source, at, at + 1), format!("unclosed `{}`", open as char))
                .with_label("opened here and never closed")
                .with_secondary(Span::new(source, text.len(), text.len()), "the file ends here")
                .with_help(format!("add `{}` where this construct ends", closer(open))),
        );
    }
    out
}

fn closer(open: u8) -> char {
    match open {
        b'(' => ')',
        b'[' => ']',
        _ => '}',
    }
}

fn starts_with_word(rest: &[u8], kw: &str) -> bool {
    rest.starts_with(kw.as_bytes()) && rest.get(kw.len()).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
}
