//! The canonical printer: AST → source text. `vigil fmt` uses it with the file's comments
//! and source text (to keep comments and single blank lines); `Display for File` prints
//! the bare AST.
//!
//! Layout rules: two-space indentation; one statement per line; a call, list or map that
//! does not fit in [`WIDTH`] columns (or holds a comment) is broken one element per line
//! with a trailing comma; a `|` chain that does not fit is broken before each `|`;
//! parentheses only where precedence needs them; durations in canonical units (`90m` is
//! printed `1h30m`). Comments attach to the next statement, option, parameter or element;
//! a comment inside an expression printed on one line moves to the line after it.

use super::ast::*;
use super::scan::Comment;

/// The line width the printer aims for.
pub const WIDTH: usize = 100;

/// Formats a parsed file with its comments. `text` is the file's source.
pub fn format(file: &File, comments: &[Comment], text: &str) -> String {
    let mut p = Printer { out: String::new(), comments, next: 0, text, last_end: 0 };
    p.file(file);
    p.out
}

impl std::fmt::Display for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format(self, &[], ""))
    }
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&flat(self))
    }
}

struct Printer<'a> {
    out: String,
    comments: &'a [Comment],
    /// The next comment not yet printed.
    next: usize,
    text: &'a str,
    /// The end of the last source construct printed, to find blank lines in the source.
    last_end: u32,
}

impl Printer<'_> {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }

    /// Whether the source has a blank line between the last thing printed and `start`.
    fn blank_before(&self, start: u32) -> bool {
        if self.text.is_empty() || start <= self.last_end {
            return false;
        }
        let gap = self.text.get(self.last_end as usize..start as usize).unwrap_or("");
        gap.matches('\n').count() >= 2
    }

    /// Prints the comments that start before `pos`, each on its own line.
    fn leading_comments(&mut self, pos: u32, level: usize, first_in_block: bool) {
        let mut first = first_in_block;
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= pos {
                break;
            }
            if !first && self.blank_before(c.span.start) {
                self.out.push('\n');
            }
            first = false;
            self.indent(level);
            self.out.push_str(&c.text);
            self.out.push('\n');
            self.last_end = c.span.end;
            self.next += 1;
        }
    }

    /// Appends a comment that starts after `end` on the same source line, if any.
    fn trailing_comment(&mut self, end: u32) {
        if let Some(c) = self.comments.get(self.next) {
            let between = self.text.get(end as usize..c.span.start as usize).unwrap_or("\n");
            if c.span.start >= end && !between.contains('\n') {
                self.out.push_str("  ");
                self.out.push_str(&c.text);
                self.last_end = c.span.end;
                self.next += 1;
            }
        }
    }

    /// Whether a comment starts inside `span`.
    fn has_comment_in(&self, start: u32, end: u32) -> bool {
        self.comments.get(self.next).is_some_and(|c| c.span.start >= start && c.span.start < end)
    }

    /// Prints, on their own lines, comments that started inside a construct printed flat.
    fn displaced_comments(&mut self, end: u32, level: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= end {
                break;
            }
            self.indent(level);
            self.out.push_str(&c.text);
            self.out.push('\n');
            self.next += 1;
        }
    }

    fn doc(&mut self, doc: &[String], marker: &str, level: usize) {
        for line in doc {
            self.indent(level);
            self.out.push_str(marker);
            if !line.is_empty() {
                self.out.push(' ');
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
    }

    fn file(&mut self, file: &File) {
        self.doc(&file.doc, "//!", 0);
        let mut prev_use = false;
        for (i, item) in file.items.iter().enumerate() {
            let span = item.span();
            let is_use = matches!(item, Item::Use(_));
            let blank = i > 0 && (!(is_use && prev_use) || self.blank_before(self.first_comment_or(span.start)));
            if (i > 0 || !file.doc.is_empty()) && blank || (i == 0 && !file.doc.is_empty()) {
                self.out.push('\n');
            }
            self.leading_comments(span.start, 0, true);
            match item {
                Item::Use(u) => self.use_decl(u),
                Item::Pipeline(p) => self.pipeline(p),
                Item::Template(t) => self.template(t),
                Item::Test(t) => self.test(t),
            }
            self.trailing_comment(span.end);
            self.out.push('\n');
            self.last_end = self.last_end.max(span.end);
            prev_use = is_use;
        }
        if self.next < self.comments.len() {
            if !self.out.is_empty() {
                self.out.push('\n');
            }
            self.leading_comments(u32::MAX, 0, true);
        }
    }

    /// The start of the first pending comment before `pos`, or `pos`.
    fn first_comment_or(&self, pos: u32) -> u32 {
        self.comments.get(self.next).filter(|c| c.span.start < pos).map_or(pos, |c| c.span.start)
    }

    fn use_decl(&mut self, u: &Use) {
        self.doc(&u.doc, "///", 0);
        self.out.push_str("use ");
        match &u.target {
            UseTarget::Path { path, alias } => {
                self.out.push_str(&join_path(path));
                if let Some(a) = alias {
                    self.out.push_str(" as ");
                    self.out.push_str(&a.node);
                }
            }
            UseTarget::Group { path, names } => {
                self.out.push_str(&join_path(path));
                self.out.push_str(".{");
                self.out.push_str(&names.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(", "));
                self.out.push('}');
            }
            UseTarget::File { path, alias } => {
                self.out.push_str(&quote(&path.node));
                if let Some(a) = alias {
                    self.out.push_str(" as ");
                    self.out.push_str(&a.node);
                }
            }
        }
    }

    fn pipeline(&mut self, p: &Pipeline) {
        self.doc(&p.doc, "///", 0);
        self.out.push_str("pipeline ");
        self.out.push_str(&p.name.node);
        self.out.push_str(" {\n");
        self.last_end = p.name.span.end;
        let mut prev_trigger = None;
        for (i, stmt) in p.body.iter().enumerate() {
            let span = stmt.span();
            let is_trigger = matches!(stmt, PipelineStmt::Trigger(_));
            // A blank line separates the triggers from the stages, and is kept where the
            // source had one.
            let start = self.first_comment_or(span.start);
            if i > 0 && (self.blank_before(start) || prev_trigger == Some(true) && !is_trigger) {
                self.out.push('\n');
            }
            self.leading_comments(span.start, 1, true);
            match stmt {
                PipelineStmt::Trigger(t) => {
                    self.indent(1);
                    self.trigger(t);
                    self.trailing_comment(span.end);
                    self.out.push('\n');
                    self.displaced_comments(span.end, 1);
                }
                PipelineStmt::Stage(s) => self.stage(s, 1),
            }
            self.last_end = self.last_end.max(span.end);
            prev_trigger = Some(is_trigger);
        }
        self.leading_comments(p.span.end, 1, false);
        self.out.push('}');
        self.last_end = p.span.end;
    }

    fn test(&mut self, t: &Test) {
        self.doc(&t.doc, "///", 0);
        self.out.push_str(&format!("test {} for {} {{\n", t.name.node, t.pipeline.node));
        self.last_end = t.pipeline.span.end;
        for (i, stmt) in t.body.iter().enumerate() {
            let (doc, span) = match stmt {
                TestStmt::Given { doc, span, .. } | TestStmt::Expect { doc, span, .. } => (doc, *span),
            };
            if i > 0 && self.blank_before(self.first_comment_or(span.start)) {
                self.out.push('\n');
            }
            self.leading_comments(span.start, 1, true);
            self.doc(doc, "///", 1);
            self.indent(1);
            match stmt {
                TestStmt::Given { stage, value, .. } => {
                    let head = format!("given {} = ", stage.node);
                    self.out.push_str(&head);
                    self.expr(value, 1, 2 + head.len());
                }
                TestStmt::Expect { cond, .. } => {
                    self.out.push_str("expect ");
                    self.expr(cond, 1, 2 + "expect ".len());
                }
            }
            self.trailing_comment(span.end);
            self.out.push('\n');
            self.displaced_comments(span.end, 1);
            self.last_end = self.last_end.max(span.end);
        }
        self.leading_comments(t.span.end, 1, false);
        self.out.push('}');
        self.last_end = t.span.end;
    }

    fn trigger(&mut self, t: &Trigger) {
        match &t.kind {
            TriggerKind::Every(d) => {
                self.out.push_str("every ");
                self.out.push_str(&d.node.to_string());
            }
            TriggerKind::Cron(s) => {
                self.out.push_str("cron ");
                self.out.push_str(&str_lit(s));
            }
            TriggerKind::On { source, path } => {
                self.out.push_str("on ");
                self.out.push_str(&source.node);
                self.out.push(' ');
                self.out.push_str(&str_lit(path));
            }
        }
    }

    fn stage(&mut self, s: &Stage, level: usize) {
        self.doc(&s.doc, "///", level);
        self.indent(level);
        let head = format!(
            "{} {} = ",
            match &s.kind.node {
                Ok(k) => k.as_str(),
                Err(word) => word.as_str(),
            },
            s.name.node
        );
        self.out.push_str(&head);
        let col = level * 2 + head.len();
        self.expr(&s.value, level, col);
        let value_end = s.value.span.end;
        match &s.options {
            None => {
                self.trailing_comment(s.span.end);
                self.out.push('\n');
                self.displaced_comments(s.span.end, level);
            }
            Some(opts) if opts.is_empty() && !self.has_comment_in(value_end, s.span.end) => {
                self.out.push_str(" {}");
                self.trailing_comment(s.span.end);
                self.out.push('\n');
            }
            Some(opts) => {
                self.out.push_str(" {");
                self.trailing_comment(value_end);
                self.out.push('\n');
                self.displaced_comments(value_end, level + 1);
                self.last_end = value_end;
                for o in opts {
                    self.leading_comments(o.span.start, level + 1, true);
                    self.indent(level + 1);
                    self.option(o);
                    self.trailing_comment(o.span.end);
                    self.out.push('\n');
                    self.displaced_comments(o.span.end, level + 1);
                    self.last_end = o.span.end;
                }
                self.leading_comments(s.span.end, level + 1, true);
                self.indent(level);
                self.out.push_str("}\n");
            }
        }
        self.last_end = s.span.end;
    }

    /// An option, in its current spelling: an old one ([`DEPRECATED_OPTIONS`], a quoted
    /// escalation target) is rewritten.
    fn option(&mut self, o: &StageOption) {
        match DEPRECATED_OPTIONS.iter().find(|(old, _, _)| *old == o.name.node) {
            Some((_, new, word)) if matches!(o.value, OptionValue::Words(_)) => {
                self.out.push_str(new);
                self.out.push(' ');
                self.out.push_str(word);
            }
            _ => self.out.push_str(&o.name.node),
        }
        match &o.value {
            OptionValue::Expr(e) => {
                self.out.push_str(": ");
                self.out.push_str(&flat(e));
            }
            OptionValue::Words(words) => {
                for (i, w) in words.iter().enumerate() {
                    self.out.push(' ');
                    let after_to = i > 0 && matches!(&words[i - 1], OptionArg::Keyword(k) if k.node == "to");
                    match w {
                        OptionArg::Keyword(k) => self.out.push_str(&k.node),
                        OptionArg::Lit(Expr { kind: ExprKind::Str(s), .. }) if after_to && is_bare_name(&s.value) => {
                            self.out.push_str(&s.value)
                        }
                        OptionArg::Lit(e) => self.out.push_str(&flat(e)),
                    }
                }
            }
        }
    }

    fn template(&mut self, t: &Template) {
        self.doc(&t.doc, "///", 0);
        let params: Vec<String> = t.params.iter().map(param_flat).collect();
        let head_flat = format!("stage {}({}) -> {} {{", t.name.node, params.join(", "), type_str(&t.output));
        let params_end = t.params.last().map_or(t.name.span.end, |p| p.span.end);
        let break_params =
            head_flat.len() > WIDTH || t.params.iter().any(|p| !p.doc.is_empty()) || self.has_comment_in(t.name.span.end, params_end);
        if break_params {
            self.out.push_str("stage ");
            self.out.push_str(&t.name.node);
            self.out.push_str("(\n");
            for p in &t.params {
                self.leading_comments(p.span.start, 1, true);
                self.doc(&p.doc, "///", 1);
                self.indent(1);
                self.out.push_str(&param_flat(p));
                self.out.push(',');
                self.trailing_comment(p.span.end);
                self.out.push('\n');
                self.last_end = p.span.end;
            }
            self.out.push_str(") -> ");
            self.out.push_str(&type_str(&t.output));
            self.out.push_str(" {\n");
        } else {
            self.out.push_str(&head_flat);
            self.out.push('\n');
        }
        self.last_end = t.output.span.end;
        for s in &t.body {
            if self.blank_before(self.first_comment_or(s.span.start)) {
                self.out.push('\n');
            }
            self.leading_comments(s.span.start, 1, true);
            self.stage(s, 1);
        }
        if self.blank_before(self.first_comment_or(t.result.span.start)) {
            self.out.push('\n');
        }
        self.leading_comments(t.result.span.start, 1, true);
        self.indent(1);
        self.expr(&t.result, 1, 2);
        self.trailing_comment(t.result.span.end);
        self.out.push('\n');
        self.displaced_comments(t.result.span.end, 1);
        self.leading_comments(t.span.end, 1, false);
        self.out.push('}');
        self.last_end = t.span.end;
    }

    /// Prints an expression starting at column `col` of a line indented `level` deep,
    /// breaking it over lines if it does not fit or holds comments.
    fn expr(&mut self, e: &Expr, level: usize, col: usize) {
        let f = flat(e);
        let has_comment = self.has_comment_in(e.span.start, e.span.end);
        if !has_comment && col + f.len() <= WIDTH && !f.contains('\n') {
            self.out.push_str(&f);
            return;
        }
        match &e.kind {
            ExprKind::Pipe(..) => {
                let mut parts = Vec::new();
                let mut cur = e;
                while let ExprKind::Pipe(l, r) = &cur.kind {
                    parts.push(&**r);
                    cur = l;
                }
                parts.push(cur);
                parts.reverse();
                self.expr(parts[0], level, col);
                for part in &parts[1..] {
                    self.out.push('\n');
                    self.indent(level + 1);
                    self.out.push_str("| ");
                    self.expr(part, level + 1, (level + 1) * 2 + 2);
                }
            }
            ExprKind::Call { callee, args } if !args.is_empty() => {
                self.out.push_str(&flat_operand(callee));
                self.out.push_str("(\n");
                self.elements(args.iter().map(|a| (a.name.as_ref().map(|n| n.node.as_str()), &a.value)), level, e.span.end);
                self.indent(level);
                self.out.push(')');
            }
            ExprKind::List(items) if !items.is_empty() => {
                self.out.push_str("[\n");
                self.elements(items.iter().map(|i| (None, i)), level, e.span.end);
                self.indent(level);
                self.out.push(']');
            }
            ExprKind::Map(entries) if !entries.is_empty() => {
                self.out.push_str("{\n");
                let keys: Vec<String> = entries.iter().map(|(k, _)| map_key(&k.node)).collect();
                self.elements(entries.iter().zip(&keys).map(|((_, v), k)| (Some(k.as_str()), v)), level, e.span.end);
                self.indent(level);
                self.out.push('}');
            }
            _ => self.out.push_str(&f),
        }
    }

    /// Call arguments, list items or map entries, one per line with a trailing comma.
    fn elements<'e>(&mut self, items: impl Iterator<Item = (Option<&'e str>, &'e Expr)>, level: usize, end: u32) {
        for (name, value) in items {
            self.leading_comments(value.span.start, level + 1, true);
            self.indent(level + 1);
            let mut col = (level + 1) * 2;
            if let Some(n) = name {
                self.out.push_str(n);
                self.out.push_str(": ");
                col += n.len() + 2;
            }
            self.expr(value, level + 1, col);
            self.out.push(',');
            self.trailing_comment(value.span.end);
            self.out.push('\n');
            self.displaced_comments(value.span.end, level + 1);
            self.last_end = value.span.end;
        }
        self.leading_comments(end, level + 1, true);
    }
}

fn join_path(path: &[Ident]) -> String {
    path.iter().map(|i| i.node.as_str()).collect::<Vec<_>>().join(".")
}

fn param_flat(p: &Param) -> String {
    let mut s = format!("{}: {}", p.name.node, type_str(&p.ty));
    if let Some(d) = &p.default {
        s.push_str(" = ");
        s.push_str(&flat(d));
    }
    s
}

/// A type as written.
pub fn type_str(t: &TypeExpr) -> String {
    match &t.arg {
        Some(a) => format!("{}[{}]", t.name.node, type_str(a)),
        None => t.name.node.clone(),
    }
}

/// A string literal as written, or quoted canonically when the compiler made it.
pub fn str_lit(s: &StrLit) -> String {
    if s.raw.is_empty() && !s.value.is_empty() {
        quote(&s.value)
    } else {
        format!("\"{}\"", s.raw)
    }
}

/// A string literal in canonical quoting.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn map_key(k: &str) -> String {
    let is_word =
        k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if is_word {
        k.to_owned()
    } else {
        quote(k)
    }
}

/// Binding strength of an expression's top node, for parenthesising.
fn strength(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Pipe(..) => 1,
        ExprKind::Binary(op, ..) => op.precedence(),
        ExprKind::Unary(..) => 7,
        _ => 8,
    }
}

fn paren_if(e: &Expr, cond: bool) -> String {
    if cond {
        format!("({})", flat(e))
    } else {
        flat(e)
    }
}

/// An operand of a postfix (field access or call): parenthesised unless it is primary.
fn flat_operand(e: &Expr) -> String {
    paren_if(e, strength(e) < 8)
}

/// Whether `s` can be written as a bare name (a stage reference): an identifier that is
/// not a reserved word.
pub fn is_bare_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !super::lower::RESERVED.contains(&s)
}

/// An expression on one line.
pub fn flat(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => format!("{f:?}"),
        ExprKind::Duration(d) => d.to_string(),
        ExprKind::Str(s) => str_lit(s),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::List(items) => format!("[{}]", items.iter().map(flat).collect::<Vec<_>>().join(", ")),
        ExprKind::Map(entries) => {
            if entries.is_empty() {
                "{}".to_owned()
            } else {
                format!(
                    "{{ {} }}",
                    entries.iter().map(|(k, v)| format!("{}: {}", map_key(&k.node), flat(v))).collect::<Vec<_>>().join(", ")
                )
            }
        }
        ExprKind::Name(n) => n.clone(),
        ExprKind::Field(inner, f) => format!("{}.{}", flat_operand(inner), f.node),
        ExprKind::Call { callee, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{}: {}", n.node, flat(&a.value)),
                    None => flat(&a.value),
                })
                .collect();
            format!("{}({})", flat_operand(callee), args.join(", "))
        }
        ExprKind::Unary(op, inner) => {
            let word = match op {
                UnaryOp::Neg => "-",
                UnaryOp::Not => "not ",
            };
            format!("{word}{}", paren_if(inner, strength(inner) < 7))
        }
        ExprKind::Binary(op, l, r) => {
            let p = op.precedence();
            format!("{} {} {}", paren_if(l, strength(l) < p), op.as_str(), paren_if(r, strength(r) <= p))
        }
        ExprKind::Pipe(l, r) => format!("{} | {}", paren_if(l, strength(l) < 1), paren_if(r, strength(r) <= 1)),
        ExprKind::Secret(inner) => format!("secret({})", flat(inner)),
        ExprKind::Error => "<error>".to_owned(),
    }
}
