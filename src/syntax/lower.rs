//! Lowering: pest's parse tree → the spanned AST, one `lower_<rule>` per grammar rule, in
//! grammar order. Literal values are decoded here (numbers, durations, escapes) and their
//! errors reported (E0104–E0108).
//!
//! Recursion here follows bracket nesting only, which `scan` bounded; operator chains are
//! folded iteratively, and the depth of every expression built is tracked so that no tree
//! deeper than [`MAX_EXPR_DEPTH`] exists (later phases and `Drop` recurse over it).

use pest::iterators::Pair;

use super::ast::*;
use super::parser::Rule;
use crate::diagnostic::{Code, Diagnostic};
use crate::source::{SourceId, Span, Spanned};

/// Words that cannot be names.
pub const RESERVED: &[&str] = &["use", "pipeline", "stage", "as", "true", "false", "and", "or", "not", "secret", "every", "cron", "on"];

/// The deepest expression tree accepted.
pub const MAX_EXPR_DEPTH: u32 = 256;

pub(crate) struct Lower<'d> {
    pub source: SourceId,
    /// The whole source text (the parsed text may be a chunk of it).
    pub text: &'d str,
    /// The plain comments of the whole source, in order (from the scan).
    pub comments: &'d [super::scan::Comment],
    /// Where the parsed text starts in the source.
    pub offset: usize,
    pub diagnostics: &'d mut Vec<Diagnostic>,
}

type P<'i> = Pair<'i, Rule>;

impl Lower<'_> {
    /// The span of a pair, without the whitespace and comments pest includes when a rule
    /// ends in an optional or repeated part (`options? ~ ";"?`). The trailing part can only
    /// be whitespace and plain `//` comments, whose spans the scan recorded.
    fn span(&self, p: &P) -> Span {
        let s = p.as_span();
        let start = self.offset + s.start();
        let mut end = self.offset + s.end();
        let bytes = self.text.as_bytes();
        loop {
            while end > start && bytes[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
            match self.comments.binary_search_by_key(&(end as u32), |c| c.span.end) {
                Ok(i) if self.comments[i].span.start as usize >= start => end = self.comments[i].span.start as usize,
                _ => break,
            }
        }
        Span::new(self.source, start, end)
    }

    fn ident(&mut self, p: P) -> Ident {
        let text = p.as_str();
        if p.as_rule() == Rule::ident && RESERVED.contains(&text) {
            let span = self.span(&p);
            self.error(
                Diagnostic::error(Code::E0101, span, format!("`{text}` is a reserved word"))
                    .with_label("a keyword cannot be a name")
                    .with_help(format!("choose another name, such as `{text}_`")),
            );
        }
        Spanned::new(text.to_owned(), self.span(&p))
    }

    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    // ---- files and items ---------------------------------------------------------------

    pub fn lower_file(&mut self, p: P) -> File {
        let mut file = File { doc: Vec::new(), items: Vec::new() };
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::module_doc => file.doc = doc_lines(inner, "//!"),
                Rule::use_decl => file.items.push(Item::Use(self.lower_use_decl(inner))),
                Rule::pipeline => file.items.push(Item::Pipeline(self.lower_pipeline(inner))),
                Rule::stage_def => file.items.push(Item::Template(self.lower_stage_def(inner))),
                Rule::test_def => file.items.push(Item::Test(self.lower_test_def(inner))),
                Rule::EOI => {}
                r => unreachable!("unexpected rule {r:?} in file"),
            }
        }
        file
    }

    fn lower_use_decl(&mut self, p: P) -> Use {
        let span = self.span(&p);
        let mut doc = Vec::new();
        let mut target = None;
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::doc => doc = doc_lines(inner, "///"),
                Rule::kw_use => {}
                Rule::use_path => target = Some(self.lower_use_path(inner)),
                Rule::use_file => target = Some(self.lower_use_file(inner)),
                r => unreachable!("unexpected rule {r:?} in use"),
            }
        }
        Use { doc, target: target.expect("grammar: use has a target"), span }
    }

    fn lower_use_path(&mut self, p: P) -> UseTarget {
        let mut path = Vec::new();
        let mut alias = None;
        let mut group = None;
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::ident => path.push(self.ident(inner)),
                Rule::use_alias => alias = Some(self.lower_use_alias(inner)),
                Rule::use_group => group = Some(inner.into_inner().map(|i| self.ident(i)).collect()),
                r => unreachable!("unexpected rule {r:?} in use path"),
            }
        }
        match group {
            Some(names) => UseTarget::Group { path, names },
            None => UseTarget::Path { path, alias },
        }
    }

    fn lower_use_file(&mut self, p: P) -> UseTarget {
        let mut path = None;
        let mut alias = None;
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::string => {
                    let s = self.lower_string(inner);
                    path = Some(Spanned::new(s.value, s.span));
                }
                Rule::use_alias => alias = Some(self.lower_use_alias(inner)),
                r => unreachable!("unexpected rule {r:?} in use file"),
            }
        }
        UseTarget::File { path: path.expect("grammar: use file has a path"), alias }
    }

    fn lower_use_alias(&mut self, p: P) -> Ident {
        let ident = p.into_inner().find(|i| i.as_rule() == Rule::ident).expect("grammar: alias has a name");
        self.ident(ident)
    }

    fn lower_pipeline(&mut self, p: P) -> Pipeline {
        let span = self.span(&p);
        let mut doc = Vec::new();
        let mut name = None;
        let mut body = Vec::new();
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::doc => doc = doc_lines(inner, "///"),
                Rule::kw_pipeline => {}
                Rule::ident => name = Some(self.ident(inner)),
                Rule::trigger => body.push(PipelineStmt::Trigger(self.lower_trigger(inner))),
                Rule::stage_stmt => body.push(PipelineStmt::Stage(self.lower_stage_stmt(inner))),
                r => unreachable!("unexpected rule {r:?} in pipeline"),
            }
        }
        Pipeline { doc, name: name.expect("grammar: pipeline has a name"), body, span }
    }

    fn lower_test_def(&mut self, p: P) -> Test {
        let span = self.span(&p);
        let mut doc = Vec::new();
        let mut names = Vec::new();
        let mut body = Vec::new();
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::doc => doc = doc_lines(inner, "///"),
                Rule::kw_test | Rule::kw_for => {}
                Rule::ident => names.push(self.ident(inner)),
                Rule::given_stmt | Rule::expect_stmt => {
                    let given = inner.as_rule() == Rule::given_stmt;
                    let sspan = self.span(&inner);
                    let (mut sdoc, mut stage, mut value) = (Vec::new(), None, None);
                    for i in inner.into_inner() {
                        match i.as_rule() {
                            Rule::doc => sdoc = doc_lines(i, "///"),
                            Rule::kw_given | Rule::kw_expect => {}
                            Rule::ident => stage = Some(self.ident(i)),
                            _ => value = Some(self.lower_expr(i).0),
                        }
                    }
                    let value = value.expect("grammar: given and expect have an expression");
                    body.push(if given {
                        TestStmt::Given { doc: sdoc, stage: stage.expect("grammar: given names a stage"), value, span: sspan }
                    } else {
                        TestStmt::Expect { doc: sdoc, cond: value, span: sspan }
                    });
                }
                r => unreachable!("unexpected rule {r:?} in test"),
            }
        }
        let mut names = names.into_iter();
        let name = names.next().expect("grammar: test has a name");
        let pipeline = names.next().expect("grammar: test names a pipeline");
        Test { doc, name, pipeline, body, span }
    }

    fn lower_trigger(&mut self, p: P) -> Trigger {
        let span = self.span(&p);
        let inner = p.into_inner().next().expect("grammar: trigger has a kind");
        let kind = match inner.as_rule() {
            Rule::every_trigger => {
                let d = inner.into_inner().find(|i| i.as_rule() == Rule::duration).expect("grammar: every has a duration");
                let dspan = self.span(&d);
                TriggerKind::Every(Spanned::new(self.lower_duration_value(d), dspan))
            }
            Rule::cron_trigger => {
                let s = inner.into_inner().find(|i| i.as_rule() == Rule::string).expect("grammar: cron has a string");
                TriggerKind::Cron(self.lower_string(s))
            }
            Rule::webhook_trigger => {
                let mut source = None;
                let mut path = None;
                for i in inner.into_inner() {
                    match i.as_rule() {
                        Rule::word => source = Some(self.ident(i)),
                        Rule::string => path = Some(self.lower_string(i)),
                        _ => {}
                    }
                }
                TriggerKind::On { source: source.expect("grammar: on has a source"), path: path.expect("grammar: on has a path") }
            }
            r => unreachable!("unexpected rule {r:?} in trigger"),
        };
        Trigger { kind, span }
    }

    fn lower_stage_stmt(&mut self, p: P) -> Stage {
        let span = self.span(&p);
        let mut doc = Vec::new();
        let mut kind = None;
        let mut name = None;
        let mut value = None;
        let mut options = None;
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::doc => doc = doc_lines(inner, "///"),
                Rule::stage_kind => {
                    let text = inner.as_str();
                    let k = StageKind::parse(text).ok_or_else(|| text.to_owned());
                    kind = Some(Spanned::new(k, self.span(&inner)));
                }
                Rule::ident => name = Some(self.ident(inner)),
                Rule::expr => value = Some(self.lower_expr(inner).0),
                Rule::options => options = Some(self.lower_options(inner)),
                r => unreachable!("unexpected rule {r:?} in stage"),
            }
        }
        Stage {
            doc,
            kind: kind.expect("grammar: stage has a kind"),
            name: name.expect("grammar: stage has a name"),
            value: value.expect("grammar: stage has a value"),
            options,
            span,
        }
    }

    fn lower_stage_def(&mut self, p: P) -> Template {
        let span = self.span(&p);
        let mut doc = Vec::new();
        let mut name = None;
        let mut params = Vec::new();
        let mut output = None;
        let mut body = Vec::new();
        let mut result = None;
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::doc => doc = doc_lines(inner, "///"),
                Rule::kw_stage => {}
                Rule::ident => name = Some(self.ident(inner)),
                Rule::params => params = inner.into_inner().map(|p| self.lower_param(p)).collect(),
                Rule::type_expr => output = Some(self.lower_type_expr(inner)),
                Rule::stage_stmt => body.push(self.lower_stage_stmt(inner)),
                Rule::expr => result = Some(self.lower_expr(inner).0),
                r => unreachable!("unexpected rule {r:?} in stage template"),
            }
        }
        Template {
            doc,
            name: name.expect("grammar: template has a name"),
            params,
            output: output.expect("grammar: template has a type"),
            body,
            result: result.expect("grammar: template has a result"),
            span,
        }
    }

    fn lower_param(&mut self, p: P) -> Param {
        let span = self.span(&p);
        let mut doc = Vec::new();
        let mut name = None;
        let mut ty = None;
        let mut default = None;
        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::doc => doc = doc_lines(inner, "///"),
                Rule::ident => name = Some(self.ident(inner)),
                Rule::type_expr => ty = Some(self.lower_type_expr(inner)),
                Rule::expr => default = Some(self.lower_expr(inner).0),
                r => unreachable!("unexpected rule {r:?} in parameter"),
            }
        }
        Param { doc, name: name.expect("grammar: param has a name"), ty: ty.expect("grammar: param has a type"), default, span }
    }

    fn lower_type_expr(&mut self, p: P) -> TypeExpr {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let name = self.ident(inner.next().expect("grammar: type has a name"));
        let arg = inner.next().map(|a| Box::new(self.lower_type_expr(a)));
        TypeExpr { name, arg, span }
    }

    // ---- options ------------------------------------------------------------------------

    fn lower_options(&mut self, p: P) -> Vec<StageOption> {
        p.into_inner().map(|o| self.lower_option(o)).collect()
    }

    fn lower_option(&mut self, p: P) -> StageOption {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let name = self.ident(inner.next().expect("grammar: option has a name"));
        let mut words = Vec::new();
        let mut expr = None;
        for i in inner {
            match i.as_rule() {
                Rule::expr => expr = Some(self.lower_expr(i).0),
                Rule::option_kw => words.push(OptionArg::Keyword(self.ident(i))),
                Rule::option_target => {
                    let mut parts = i.into_inner();
                    words.push(OptionArg::Keyword(self.ident(parts.next().expect("grammar: `to`"))));
                    let target = parts.next().expect("grammar: a stage name after `to`");
                    words.push(OptionArg::Lit(self.lower_primary(target).0));
                }
                _ => words.push(OptionArg::Lit(self.lower_primary(i).0)),
            }
        }
        let value = match expr {
            Some(e) => OptionValue::Expr(e),
            None => OptionValue::Words(words),
        };
        StageOption { name, value, span }
    }

    // ---- expressions --------------------------------------------------------------------

    /// Lowers an `expr` pair (for [`super::parse_expr`]).
    pub(crate) fn lower_expr_pub(&mut self, p: P) -> Expr {
        self.lower_expr(p).0
    }

    /// Lowers an expression and returns it with its depth.
    fn lower_expr(&mut self, p: P) -> (Expr, u32) {
        enum Op {
            Pipe,
            Bin(BinaryOp),
        }
        fn prec(op: &Op) -> u8 {
            match op {
                Op::Pipe => 1,
                Op::Bin(b) => b.precedence(),
            }
        }
        let mut operands: Vec<(Expr, u32)> = Vec::new();
        let mut ops: Vec<Op> = Vec::new();
        let mut prefixes: Vec<(UnaryOp, Span)> = Vec::new();
        let mut too_deep = false;

        // Folds the top operator with its two operands.
        let reduce = |operands: &mut Vec<(Expr, u32)>, ops: &mut Vec<Op>| {
            let op = ops.pop().expect("an operator to reduce");
            let (rhs, rd) = operands.pop().expect("a right operand");
            let (lhs, ld) = operands.pop().expect("a left operand");
            let span = lhs.span.to(rhs.span);
            let kind = match op {
                Op::Pipe => ExprKind::Pipe(Box::new(lhs), Box::new(rhs)),
                Op::Bin(b) => ExprKind::Binary(b, Box::new(lhs), Box::new(rhs)),
            };
            operands.push((Expr { kind, span }, ld.max(rd) + 1));
        };

        for inner in p.into_inner() {
            match inner.as_rule() {
                Rule::prefix_op => {
                    let op = if inner.as_str() == "-" { UnaryOp::Neg } else { UnaryOp::Not };
                    prefixes.push((op, self.span(&inner)));
                    if prefixes.len() as u32 > MAX_EXPR_DEPTH {
                        // Never build the chain: a tree this deep could overflow the stack
                        // when dropped.
                        let span = prefixes[0].1.to(self.span(&inner));
                        self.error(
                            Diagnostic::error(Code::E0104, span, format!("more than {MAX_EXPR_DEPTH} prefix operators in a row"))
                                .with_label("this expression is too deep")
                                .with_help("remove the repeated `-` or `not`"),
                        );
                        return (Expr { kind: ExprKind::Error, span }, 0);
                    }
                }
                Rule::postfix_expr => {
                    let (mut e, mut d) = self.lower_postfix_expr(inner);
                    for (op, span) in prefixes.drain(..).rev() {
                        let s = span.to(e.span);
                        e = Expr { kind: ExprKind::Unary(op, Box::new(e)), span: s };
                        d += 1;
                    }
                    operands.push((e, d));
                }
                Rule::infix_op => {
                    let op = match inner.as_str() {
                        "|" => Op::Pipe,
                        "or" => Op::Bin(BinaryOp::Or),
                        "and" => Op::Bin(BinaryOp::And),
                        "==" => Op::Bin(BinaryOp::Eq),
                        "!=" => Op::Bin(BinaryOp::Ne),
                        "<=" => Op::Bin(BinaryOp::Le),
                        ">=" => Op::Bin(BinaryOp::Ge),
                        "<" => Op::Bin(BinaryOp::Lt),
                        ">" => Op::Bin(BinaryOp::Gt),
                        "+" => Op::Bin(BinaryOp::Add),
                        "-" => Op::Bin(BinaryOp::Sub),
                        "*" => Op::Bin(BinaryOp::Mul),
                        "/" => Op::Bin(BinaryOp::Div),
                        "%" => Op::Bin(BinaryOp::Rem),
                        other => unreachable!("grammar: unknown operator {other}"),
                    };
                    while ops.last().is_some_and(|top| prec(top) >= prec(&op)) {
                        reduce(&mut operands, &mut ops);
                    }
                    ops.push(op);
                }
                r => unreachable!("unexpected rule {r:?} in expression"),
            }
            if operands.last().is_some_and(|(_, d)| *d > MAX_EXPR_DEPTH) {
                too_deep = true;
                break;
            }
        }
        if !too_deep {
            while !ops.is_empty() && operands.len() >= 2 {
                reduce(&mut operands, &mut ops);
                if operands.last().is_some_and(|(_, d)| *d > MAX_EXPR_DEPTH) {
                    too_deep = true;
                    break;
                }
            }
        }
        let (mut e, d) = operands.pop().expect("grammar: an expression has an operand");
        if too_deep {
            let span = operands.first().map_or(e.span, |(f, _)| f.span.to(e.span));
            self.error(
                Diagnostic::error(Code::E0104, span, format!("expression deeper than {MAX_EXPR_DEPTH} levels"))
                    .with_label("this expression is too deep")
                    .with_help("split it into smaller expressions or stages"),
            );
            e = Expr { kind: ExprKind::Error, span };
            // Drop what was built one piece at a time: each piece is at most
            // MAX_EXPR_DEPTH + 1 deep, so dropping it is bounded.
            return (e, 0);
        }
        (e, d)
    }

    fn lower_postfix_expr(&mut self, p: P) -> (Expr, u32) {
        let mut inner = p.into_inner();
        let (mut e, mut d) = self.lower_primary(inner.next().expect("grammar: postfix has a primary"));
        for post in inner {
            let span = e.span.to(self.span(&post));
            match post.as_rule() {
                Rule::field => {
                    let word = post.into_inner().next().expect("grammar: field has a name");
                    e = Expr { kind: ExprKind::Field(Box::new(e), self.ident(word)), span };
                    d += 1;
                }
                Rule::call_args => {
                    let mut args = Vec::new();
                    let mut max = 0;
                    for a in post.into_inner() {
                        let (arg, ad) = self.lower_arg(a);
                        max = max.max(ad);
                        args.push(arg);
                    }
                    e = Expr { kind: ExprKind::Call { callee: Box::new(e), args }, span };
                    d = d.max(max) + 1;
                }
                r => unreachable!("unexpected rule {r:?} in postfix"),
            }
            if d > MAX_EXPR_DEPTH {
                self.error(
                    Diagnostic::error(Code::E0104, span, format!("expression deeper than {MAX_EXPR_DEPTH} levels"))
                        .with_label("this expression is too deep"),
                );
                return (Expr { kind: ExprKind::Error, span }, 0);
            }
        }
        (e, d)
    }

    fn lower_arg(&mut self, p: P) -> (Arg, u32) {
        let inner = p.into_inner().next().expect("grammar: arg has content");
        match inner.as_rule() {
            Rule::named_arg => {
                let mut parts = inner.into_inner();
                let name = self.ident(parts.next().expect("grammar: named arg has a name"));
                let (value, d) = self.lower_expr(parts.next().expect("grammar: named arg has a value"));
                (Arg { name: Some(name), value }, d)
            }
            Rule::expr => {
                let (value, d) = self.lower_expr(inner);
                (Arg { name: None, value }, d)
            }
            r => unreachable!("unexpected rule {r:?} in argument"),
        }
    }

    fn lower_primary(&mut self, p: P) -> (Expr, u32) {
        let span = self.span(&p);
        let mk = |kind| Expr { kind, span };
        match p.as_rule() {
            Rule::number => (mk(self.lower_number(&p)), 0),
            Rule::duration => (mk(ExprKind::Duration(self.lower_duration_value(p))), 0),
            Rule::string => (mk(ExprKind::Str(self.lower_string(p))), 0),
            Rule::bool => (mk(ExprKind::Bool(p.as_str() == "true")), 0),
            Rule::ident => {
                let id = self.ident(p);
                (mk(ExprKind::Name(id.node)), 0)
            }
            Rule::list => {
                let mut items = Vec::new();
                let mut max = 0;
                for i in p.into_inner() {
                    let (e, d) = self.lower_expr(i);
                    max = max.max(d);
                    items.push(e);
                }
                (mk(ExprKind::List(items)), max + 1)
            }
            Rule::map => {
                let mut entries = Vec::new();
                let mut max = 0;
                for entry in p.into_inner() {
                    let mut parts = entry.into_inner();
                    let key = parts.next().expect("grammar: map entry has a key");
                    let key = if key.as_rule() == Rule::string {
                        let s = self.lower_string(key);
                        Spanned::new(s.value, s.span)
                    } else {
                        self.ident(key)
                    };
                    let (value, d) = self.lower_expr(parts.next().expect("grammar: map entry has a value"));
                    max = max.max(d);
                    entries.push((key, value));
                }
                (mk(ExprKind::Map(entries)), max + 1)
            }
            Rule::paren => {
                let (mut e, d) = self.lower_expr(p.into_inner().next().expect("grammar: paren has an expression"));
                // Parentheses are not kept: the printer adds those precedence needs. The
                // span widens to include them so that diagnostics underline what was written.
                e.span = span;
                (e, d)
            }
            Rule::secret_ref => {
                let inner = p.into_inner().find(|i| i.as_rule() == Rule::expr).expect("grammar: secret has an argument");
                let (e, d) = self.lower_expr(inner);
                (mk(ExprKind::Secret(Box::new(e))), d + 1)
            }
            r => unreachable!("unexpected rule {r:?} as primary"),
        }
    }

    fn lower_number(&mut self, p: &P) -> ExprKind {
        let text: String = p.as_str().chars().filter(|c| *c != '_').collect();
        let span = self.span(p);
        if text.contains(['.', 'e', 'E']) {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => ExprKind::Float(f),
                _ => {
                    self.error(
                        Diagnostic::error(Code::E0106, span, "number out of range")
                            .with_label("this float is not finite")
                            .with_help("use a smaller number"),
                    );
                    ExprKind::Error
                }
            }
        } else {
            match text.parse::<i64>() {
                Ok(i) => ExprKind::Int(i),
                Err(_) => {
                    self.error(
                        Diagnostic::error(Code::E0106, span, "number out of range")
                            .with_label("this integer does not fit in 64 bits")
                            .with_help(format!("integers go up to {}", i64::MAX)),
                    );
                    ExprKind::Error
                }
            }
        }
    }

    fn lower_duration_value(&mut self, p: P) -> Duration {
        let text = p.as_str();
        let span = self.span(&p);
        match crate::time::duration_ms(text) {
            Ok(millis) => Duration { millis },
            Err(crate::time::DurationError::UnknownUnit { start, end }) => {
                let unit = &text[start..end];
                let num_start = text[..start].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
                let uspan = Span::new(self.source, span.start as usize + start, span.start as usize + end);
                let units = crate::time::DURATION_UNITS.map(|(u, _)| u);
                let mut d = Diagnostic::error(Code::E0107, uspan, format!("unknown duration unit `{unit}`")).with_label("not a unit");
                d = d.with_help(match crate::diagnostic::did_you_mean(unit, units).or(unit_alias(unit)) {
                    Some(u) => format!("did you mean `{}{u}`? units are ms, s, m, h, d, w", &text[num_start..start]),
                    None => "units are ms, s, m, h, d, w".to_owned(),
                });
                self.error(d);
                Duration { millis: 0 }
            }
            Err(_) => {
                self.error(
                    Diagnostic::error(Code::E0107, span, "duration out of range")
                        .with_label("this duration overflows")
                        .with_help("use a smaller duration"),
                );
                Duration { millis: 0 }
            }
        }
    }

    fn lower_string(&mut self, p: P) -> StrLit {
        let span = self.span(&p);
        let inner = p.into_inner().next().expect("grammar: string has an inner part");
        let raw = inner.as_str();
        let base = self.offset + inner.as_span().start();
        let mut value = String::with_capacity(raw.len());
        let mut chars = raw.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            let esc_span = |len: usize| Span::new(self.source, base + i, base + i + len);
            match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, '{')) => value.push('{'),
                Some((_, '}')) => value.push('}'),
                Some((_, 'u')) => match parse_unicode_escape(&raw[i + 2..]) {
                    Some((c, len)) => {
                        value.push(c);
                        for _ in 0..len {
                            chars.next();
                        }
                    }
                    None => {
                        let d = Diagnostic::error(Code::E0105, esc_span(2), "invalid unicode escape")
                            .with_label("expected `\\u{HEX}` with a valid code point");
                        self.error(d);
                    }
                },
                Some((_, other)) => {
                    let d = Diagnostic::error(
                        Code::E0105,
                        esc_span(1 + other.len_utf8()),
                        format!("invalid escape `\\{}`", other.escape_debug()),
                    )
                    .with_label("not an escape")
                    .with_help("valid escapes: \\\" \\\\ \\n \\t \\r \\{ \\} \\u{HEX}; write `\\\\` for a backslash");
                    self.error(d);
                }
                None => {}
            }
        }
        self.check_template(raw, base);
        StrLit { value, raw: raw.to_owned(), span }
    }

    /// Checks `{{ }}` templates in a string's raw text.
    fn check_template(&mut self, raw: &str, base: usize) {
        let mut rest = 0;
        while let Some(open) = raw[rest..].find("{{").map(|i| i + rest) {
            if open > 0 && raw.as_bytes()[open - 1] == b'\\' {
                rest = open + 2;
                continue;
            }
            let after = open + 2;
            let close = raw[after..].find("}}").map(|i| i + after);
            let next_open = raw[after..].find("{{").map(|i| i + after);
            let span = Span::new(self.source, base + open, base + after);
            match close {
                Some(c) if next_open.is_none_or(|n| n > c) => {
                    if raw[after..c].trim().is_empty() {
                        self.error(
                            Diagnostic::error(Code::E0108, Span::new(self.source, base + open, base + c + 2), "empty template")
                                .with_label("nothing between `{{` and `}}`")
                                .with_help("write a name, such as `{{ pipeline }}`"),
                        );
                    }
                    rest = c + 2;
                }
                _ => {
                    self.error(
                        Diagnostic::error(Code::E0108, span, "unclosed template")
                            .with_label("this `{{` has no matching `}}`")
                            .with_help("close it with `}}`, or write `\\{` for a literal brace"),
                    );
                    return;
                }
            }
        }
    }
}

fn unit_alias(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "sec" | "secs" | "second" | "seconds" => "s",
        "min" | "mins" | "minute" | "minutes" => "m",
        "hr" | "hrs" | "hour" | "hours" => "h",
        "day" | "days" => "d",
        "week" | "weeks" => "w",
        "msec" | "millis" => "ms",
        _ => return None,
    })
}

/// Parses `{XXXX}` after `\u`; returns the character and how many characters it used.
fn parse_unicode_escape(s: &str) -> Option<(char, usize)> {
    let body = s.strip_prefix('{')?;
    let end = body.find('}')?;
    if end == 0 || end > 6 {
        return None;
    }
    let c = char::from_u32(u32::from_str_radix(&body[..end], 16).ok()?)?;
    Some((c, end + 2))
}

/// The text of doc comment lines without their markers and one leading space.
fn doc_lines(p: P, marker: &str) -> Vec<String> {
    p.into_inner()
        .map(|l| {
            let t = l.as_str().trim_end_matches(['\r', ' ', '\t']);
            let t = t.strip_prefix(marker).unwrap_or(t);
            t.strip_prefix(' ').unwrap_or(t).to_owned()
        })
        .collect()
}
