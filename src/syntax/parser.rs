//! The pest parser and the conversion of pest's errors into diagnostics in user words.

use pest::Parser as _;
use pest_derive::Parser;

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{SourceId, Span};

/// The parser generated from `grammar/vigil.pest`.
#[derive(Parser)]
#[grammar = "../grammar/vigil.pest"]
pub struct VigilParser;

/// Parses `text` as a whole file. `offset` is where `text` starts in its source, so that
/// spans in the error are positions in the whole file.
pub(crate) fn parse_file(text: &str) -> Result<pest::iterators::Pairs<'_, Rule>, pest::error::Error<Rule>> {
    VigilParser::parse(Rule::file, text)
}

impl VigilParser {
    /// Runs only the pest parser over a file and counts its pairs (for profiling).
    #[doc(hidden)]
    pub fn parse_file_for_bench(text: &str) -> usize {
        parse_file(text).map(|p| p.flatten().count()).unwrap_or(0)
    }
}

/// Turns a pest error into a diagnostic: rule names become the words a user knows, and the
/// token found at the error position is quoted.
pub(crate) fn error_to_diagnostic(err: &pest::error::Error<Rule>, source: SourceId, full_text: &str, offset: usize) -> Diagnostic {
    let pos = offset
        + match err.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((s, _)) => s,
        };
    let rest = &full_text[pos.min(full_text.len())..];
    let found = describe_token(rest);
    let token_len = token_len(rest).max(if rest.is_empty() { 0 } else { 1 });
    let span = Span::new(source, pos, pos + token_len);
    if rest.starts_with("///") && !rest.starts_with("////") || rest.starts_with("//!") {
        let what = if rest.starts_with("//!") {
            "`//!` documents the file and must come first"
        } else {
            "`///` must come right before an item, stage or parameter"
        };
        return Diagnostic::error(
            Code::E0111,
            Span::new(source, pos, pos + rest.find('\n').unwrap_or(rest.len())),
            "doc comment documents nothing",
        )
        .with_label(what)
        .with_help("move it before what it documents, or make it a plain `//` comment");
    }
    if rest.starts_with('#') {
        return Diagnostic::error(
            Code::E0112,
            Span::new(source, pos, pos + rest.find('\n').unwrap_or(rest.len())),
            "`#` does not start a comment",
        )
        .with_label("comments start with `//`")
        .with_help("replace `#` with `//`: vigil's comments are `//` (plain) and `///` (documentation)");
    }
    let expected = match &err.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => expected_words(positives),
        pest::error::ErrorVariant::CustomError { message } => vec![message.clone()],
    };
    let message = format!("unexpected {found}");
    let label = if expected.is_empty() { "not expected here".to_owned() } else { format!("expected {}", join_or(&expected)) };
    let mut d = Diagnostic::error(Code::E0101, span, message).with_label(label);
    if let Some(help) = help_for(rest, &expected) {
        d = d.with_help(help);
    }
    d
}

fn help_for(rest: &str, expected: &[String]) -> Option<String> {
    if rest.starts_with('=') && !rest.starts_with("==") && !expected.iter().any(|e| e == "`=`") {
        return Some("named arguments and map entries are written `name: value`; compare with `==`".into());
    }
    if rest.starts_with("&&") || rest.starts_with("||") {
        return Some("write `and` and `or` for logic".into());
    }
    if rest.starts_with('\'') {
        return Some("strings use double quotes: \"...\"".into());
    }
    if expected.iter().any(|e| e == "a stage name") {
        let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !word.is_empty() {
            return Some(format!("`{word}` is a reserved word; choose another name"));
        }
    }
    None
}

/// User words for what the grammar expected, deduplicated, in a stable order.
fn expected_words(rules: &[Rule]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rules {
        let w = match r {
            Rule::EOI => "end of file",
            Rule::file
            | Rule::use_decl
            | Rule::pipeline
            | Rule::stage_def
            | Rule::test_def
            | Rule::kw_use
            | Rule::kw_pipeline
            | Rule::kw_stage
            | Rule::kw_test => "`use`, `pipeline`, `stage` or `test`",
            Rule::trigger
            | Rule::every_trigger
            | Rule::cron_trigger
            | Rule::webhook_trigger
            | Rule::kw_every
            | Rule::kw_cron
            | Rule::kw_on => "a trigger (`every`, `cron`, `on webhook`)",
            Rule::given_stmt | Rule::expect_stmt | Rule::kw_given | Rule::kw_expect => "`given` or `expect`",
            Rule::kw_for => "`for`",
            Rule::stage_stmt | Rule::stage_kind => "a stage (`collect`, `preprocess`, `train`, `predict`, `respond`)",
            Rule::doc | Rule::doc_line => "a doc comment",
            Rule::module_doc | Rule::module_doc_line => "a module doc comment",
            Rule::use_path | Rule::use_file => "a module path or file name",
            Rule::use_group => "`{`",
            Rule::use_alias | Rule::kw_as => "`as`",
            Rule::ident => "a name",
            Rule::word => "a name",
            Rule::params | Rule::param => "a parameter",
            Rule::type_expr => "a type",
            Rule::options => "`{`",
            Rule::option => "an option",
            Rule::option_kw | Rule::option_to => "an option word (`every`, `per`, `for`, `when`, ...)",
            Rule::option_target => "`to` and a stage name",
            Rule::expr | Rule::expr_only | Rule::postfix_expr | Rule::prefix_op | Rule::kw_not => "an expression",
            Rule::infix_op | Rule::kw_and | Rule::kw_or => "an operator",
            Rule::field => "`.`",
            Rule::call_args => "`(`",
            Rule::arg | Rule::named_arg => "an argument",
            Rule::secret_ref | Rule::kw_secret => "`secret(...)`",
            Rule::number => "a number",
            Rule::duration => "a duration",
            Rule::string | Rule::string_inner => "a string",
            Rule::bool => "`true` or `false`",
            Rule::list => "`[`",
            Rule::map | Rule::map_entry => "a map entry",
            Rule::paren => "`(`",
            _ => continue,
        };
        if !out.iter().any(|o| o == w) {
            out.push(w.to_owned());
        }
    }
    out
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// How a token at the start of `rest` is named in a message.
fn describe_token(rest: &str) -> String {
    let Some(c) = rest.chars().next() else {
        return "end of file".to_owned();
    };
    let len = token_len(rest);
    let tok = &rest[..len.max(c.len_utf8())];
    if c == '\0' {
        "NUL byte".to_owned()
    } else if c.is_control() && c != '\n' {
        format!("control character U+{:04X}", c as u32)
    } else if tok.chars().count() > 40 {
        let short: String = tok.chars().take(40).collect();
        format!("`{short}…`")
    } else if c == '\n' || c == '\r' {
        "end of line".to_owned()
    } else {
        format!("`{}`", tok.escape_debug())
    }
}

/// The length of the token at the start of `rest`: a word, a number or one character.
fn token_len(rest: &str) -> usize {
    let Some(c) = rest.chars().next() else { return 0 };
    if c.is_alphanumeric() || c == '_' {
        rest.char_indices()
            .take(200)
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or_else(|| rest.char_indices().nth(200).map_or(rest.len(), |(i, _)| i), |(i, _)| i)
    } else {
        c.len_utf8()
    }
}
