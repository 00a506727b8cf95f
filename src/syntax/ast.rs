//! The spanned syntax tree of one source file.
//!
//! Equality ignores spans (see [`Spanned`]'s `PartialEq` and the manual impls below), so
//! `parse(print(parse(x))) == parse(x)` is the round-trip property the tests check.
//! [`std::fmt::Display`] for [`File`] is in `print.rs` and writes canonical source.

use crate::source::{Span, Spanned};

/// A name with its span.
pub type Ident = Spanned<String>;

/// One parsed file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// The `//!` header, one entry per line, without the `//!`.
    pub doc: Vec<String>,
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Use(Use),
    Pipeline(Pipeline),
    Template(Template),
    Test(Test),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Use(u) => u.span,
            Item::Pipeline(p) => p.span,
            Item::Template(t) => t.span,
            Item::Test(t) => t.span,
        }
    }
}

/// `test name for pipeline { given ...  expect ... }`.
#[derive(Clone, Debug)]
pub struct Test {
    pub doc: Doc,
    pub name: Ident,
    pub pipeline: Ident,
    pub body: Vec<TestStmt>,
    pub span: Span,
}

impl PartialEq for Test {
    fn eq(&self, o: &Self) -> bool {
        self.doc == o.doc && self.name == o.name && self.pipeline == o.pipeline && self.body == o.body
    }
}

/// A statement of a test.
#[derive(Clone, Debug)]
pub enum TestStmt {
    /// `given stage = fixture`: the stage's output is replaced by the fixture.
    Given { doc: Doc, stage: Ident, value: Expr, span: Span },
    /// `expect condition`.
    Expect { doc: Doc, cond: Expr, span: Span },
}

impl PartialEq for TestStmt {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (TestStmt::Given { doc: a, stage: b, value: c, .. }, TestStmt::Given { doc: x, stage: y, value: z, .. }) => {
                a == x && b == y && c == z
            }
            (TestStmt::Expect { doc: a, cond: b, .. }, TestStmt::Expect { doc: x, cond: y, .. }) => a == x && b == y,
            _ => false,
        }
    }
}

/// Doc comment lines (`///`), without the slashes.
pub type Doc = Vec<String>;

/// `use ...`.
#[derive(Clone, Debug)]
pub struct Use {
    pub doc: Doc,
    pub target: UseTarget,
    pub span: Span,
}

impl PartialEq for Use {
    fn eq(&self, o: &Self) -> bool {
        self.doc == o.doc && self.target == o.target
    }
}

/// What a `use` imports.
#[derive(Clone, Debug, PartialEq)]
pub enum UseTarget {
    /// `use std.detect`, `use std.detect.robust_zscore`, `use std.detect as d`.
    Path { path: Vec<Ident>, alias: Option<Ident> },
    /// `use std.detect.{a, b}`.
    Group { path: Vec<Ident>, names: Vec<Ident> },
    /// `use "common.vigil"`, `use "common.vigil" as c`.
    File { path: Spanned<String>, alias: Option<Ident> },
}

/// `pipeline name { ... }`.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub doc: Doc,
    pub name: Ident,
    pub body: Vec<PipelineStmt>,
    pub span: Span,
}

impl PartialEq for Pipeline {
    fn eq(&self, o: &Self) -> bool {
        self.doc == o.doc && self.name == o.name && self.body == o.body
    }
}

/// A statement in a pipeline body.
#[derive(Clone, Debug, PartialEq)]
pub enum PipelineStmt {
    Trigger(Trigger),
    Stage(Stage),
}

impl PipelineStmt {
    pub fn span(&self) -> Span {
        match self {
            PipelineStmt::Trigger(t) => t.span,
            PipelineStmt::Stage(s) => s.span,
        }
    }
}

/// What starts a tick.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub span: Span,
}

impl PartialEq for Trigger {
    fn eq(&self, o: &Self) -> bool {
        self.kind == o.kind
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TriggerKind {
    /// `every 30s`.
    Every(Spanned<Duration>),
    /// `cron "0 * * * *"`.
    Cron(StrLit),
    /// `on webhook "/path"`; `source` is the word after `on`.
    On { source: Ident, path: StrLit },
}

/// The five stage kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Collect,
    Preprocess,
    Train,
    Predict,
    Respond,
}

impl StageKind {
    pub const ALL: [StageKind; 5] = [StageKind::Collect, StageKind::Preprocess, StageKind::Train, StageKind::Predict, StageKind::Respond];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Collect => "collect",
            StageKind::Preprocess => "preprocess",
            StageKind::Train => "train",
            StageKind::Predict => "predict",
            StageKind::Respond => "respond",
        }
    }

    pub fn parse(s: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind name = expr { options }`.
#[derive(Clone, Debug)]
pub struct Stage {
    pub doc: Doc,
    /// The kind as written; `None` when the word is not a stage kind (reported by check).
    pub kind: Spanned<Result<StageKind, String>>,
    pub name: Ident,
    pub value: Expr,
    pub options: Option<Vec<StageOption>>,
    pub span: Span,
}

impl PartialEq for Stage {
    fn eq(&self, o: &Self) -> bool {
        self.doc == o.doc && self.kind == o.kind && self.name == o.name && self.value == o.value && self.options == o.options
    }
}

/// One stage option: `retry 3 backoff 1s` or `fallback: scores_z`.
#[derive(Clone, Debug)]
pub struct StageOption {
    pub name: Ident,
    pub value: OptionValue,
    pub span: Span,
}

impl PartialEq for StageOption {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.value == o.value
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    /// Words after the option name.
    Words(Vec<OptionArg>),
    /// `name: expr`.
    Expr(Expr),
}

/// Old option names still accepted for one release (W0005), which `vigil fmt` rewrites:
/// the old name, the new one, and the word the new form puts before the old one's
/// arguments (`pending_for 2m` is `pending for 2m`).
pub const DEPRECATED_OPTIONS: &[(&str, &str, &str)] = &[("pending_for", "pending", "for"), ("keep_firing_for", "keep_firing", "for")];

/// A word of an option.
#[derive(Clone, Debug, PartialEq)]
pub enum OptionArg {
    Keyword(Ident),
    Lit(Expr),
}

impl OptionArg {
    pub fn span(&self) -> Span {
        match self {
            OptionArg::Keyword(k) => k.span,
            OptionArg::Lit(e) => e.span,
        }
    }
}

/// `stage name(params) -> Type { stages; result }`.
#[derive(Clone, Debug)]
pub struct Template {
    pub doc: Doc,
    pub name: Ident,
    pub params: Vec<Param>,
    pub output: TypeExpr,
    pub body: Vec<Stage>,
    pub result: Expr,
    pub span: Span,
}

impl PartialEq for Template {
    fn eq(&self, o: &Self) -> bool {
        self.doc == o.doc
            && self.name == o.name
            && self.params == o.params
            && self.output == o.output
            && self.body == o.body
            && self.result == o.result
    }
}

/// A template parameter.
#[derive(Clone, Debug)]
pub struct Param {
    pub doc: Doc,
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<Expr>,
    pub span: Span,
}

impl PartialEq for Param {
    fn eq(&self, o: &Self) -> bool {
        self.doc == o.doc && self.name == o.name && self.ty == o.ty && self.default == o.default
    }
}

/// A type as written: `Series`, `List[Float]`.
#[derive(Clone, Debug)]
pub struct TypeExpr {
    pub name: Ident,
    pub arg: Option<Box<TypeExpr>>,
    pub span: Span,
}

impl PartialEq for TypeExpr {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.arg == o.arg
    }
}

/// A duration in milliseconds, with the text it was written as (`1h30m`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Duration {
    pub millis: u64,
}

impl std::fmt::Display for Duration {
    /// The canonical spelling: the largest units first, `0s` for zero
    /// ([`crate::time::format_duration_source`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::time::format_duration_source(self.millis))
    }
}

/// A string literal: its value (escapes resolved) and its spelling in the source.
#[derive(Clone, Debug)]
pub struct StrLit {
    pub value: String,
    /// The text between the quotes as written, escapes included. The printer writes it
    /// back unchanged (as rustfmt does), so that `\{{` stays a literal brace rather than
    /// becoming a template. Empty for strings made by the compiler.
    pub raw: String,
    pub span: Span,
}

impl PartialEq for StrLit {
    fn eq(&self, o: &Self) -> bool {
        self.value == o.value && self.raw == o.raw
    }
}

impl StrLit {
    /// Whether the string contains `{{ }}` templates.
    pub fn is_template(&self) -> bool {
        self.value.contains("{{")
    }
}

/// An expression.
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl PartialEq for Expr {
    fn eq(&self, o: &Self) -> bool {
        self.kind == o.kind
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Duration(Duration),
    Str(StrLit),
    Bool(bool),
    List(Vec<Expr>),
    Map(Vec<(Spanned<String>, Expr)>),
    /// A name: a stage, parameter, template, operator or module.
    Name(String),
    /// `expr.field`.
    Field(Box<Expr>, Ident),
    /// `callee(args)`.
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
    },
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `input | call(...)`: the input becomes the call's first argument.
    Pipe(Box<Expr>, Box<Expr>),
    /// `secret(expr)`; the argument must be a string literal (checked).
    Secret(Box<Expr>),
    /// Stands in for an expression that failed to lower; a diagnostic was reported.
    Error,
}

/// A call argument, positional or named.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Or => "or",
            And => "and",
            Eq => "==",
            Ne => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Rem => "%",
        }
    }

    /// Binding strength: higher binds tighter. `|` (pipe) is 1, below all of these.
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            Or => 2,
            And => 3,
            Eq | Ne | Lt | Le | Gt | Ge => 4,
            Add | Sub => 5,
            Mul | Div | Rem => 6,
        }
    }
}

impl Expr {
    /// The dotted path of a name or field chain (`prometheus.scrape`), if it is one.
    pub fn as_path(&self) -> Option<Vec<&Ident>> {
        let mut out = Vec::new();
        let mut e = self;
        loop {
            match &e.kind {
                ExprKind::Field(inner, field) => {
                    out.push(field);
                    e = inner;
                }
                ExprKind::Name(_) => break,
                _ => return None,
            }
        }
        out.reverse();
        Some(out)
    }

    /// The head name of a path expression.
    pub fn head_name(&self) -> Option<(&str, Span)> {
        let mut e = self;
        loop {
            match &e.kind {
                ExprKind::Field(inner, _) => e = inner,
                ExprKind::Name(n) => return Some((n, e.span)),
                _ => return None,
            }
        }
    }
}
