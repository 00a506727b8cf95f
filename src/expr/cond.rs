//! Conditions resolved and typed for the plan ([`resolve`]), and the one definition of
//! what type each operator gives ([`binary_type`], [`unary_type`]), which the checker
//! uses too.
//!
//! The planner resolves every `when:` it meets, once the types of the stage's inputs are
//! known: names become `item` (the input) or the inlined subtree of a template's
//! Condition parameter, and every `item.field` is looked up in the input type's field
//! list. What the checker could not see — a Condition parameter
//! inlined where the input is another type than where it was written — is refused here,
//! at planning, with the same codes, instead of reading `null` at run time.

use std::sync::Arc;

use crate::source::Span;
use crate::syntax::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::types::Ty;
use crate::value::Cond;

/// What a name in a condition means where the condition is written.
#[derive(Clone, Debug)]
pub enum Name {
    /// An input of the stage, of this port type: it becomes `item`.
    Input(Ty),
    /// A template's Condition parameter: its condition is inlined.
    Inline(Arc<Cond>),
    /// Nothing here.
    Unknown,
}

/// Why a condition could not be resolved; the planner turns each into a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub enum Unresolved {
    /// `item.field` where the input type has no such field (E0209).
    NoField { span: Span, ty: Ty, field: String },
    /// A name that is not an input or a parameter (E0202).
    UnknownName { span: Span, name: String },
    /// Operands an operator does not take (E0317).
    Operand { span: Span, message: String },
    /// A condition whose value is not a Bool (E0304).
    NotBool { span: Span, ty: Ty },
    /// A construct conditions do not have: a call, a pipe, a map literal (E0405).
    Construct { span: Span },
}

impl Unresolved {
    /// Where.
    pub fn span(&self) -> Span {
        match self {
            Unresolved::NoField { span, .. }
            | Unresolved::UnknownName { span, .. }
            | Unresolved::Operand { span, .. }
            | Unresolved::NotBool { span, .. }
            | Unresolved::Construct { span } => *span,
        }
    }
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::NoField { ty, field, .. } => write!(f, "{ty} has no field `{field}`"),
            Unresolved::UnknownName { name, .. } => write!(f, "unknown name `{name}`"),
            Unresolved::Operand { message, .. } => f.write_str(message),
            Unresolved::NotBool { ty, .. } => write!(f, "a condition must be a Bool, not a {ty}"),
            Unresolved::Construct { .. } => f.write_str("a condition reads the input's fields with literals and operators only"),
        }
    }
}

/// Resolves and types the condition `e`: `names` says what each bare name means, `item`
/// is the type of the stage's input (what `item` means in an inlined condition).
///
/// # Errors
/// The first thing that does not resolve; see [`Unresolved`].
pub fn resolve(e: &Expr, item: Ty, names: &dyn Fn(&str) -> Name) -> Result<Cond, Unresolved> {
    let mut reads = Vec::new();
    let (expr, ty) = walk(e, item, names, &mut reads)?;
    if ty != Ty::Bool {
        return Err(Unresolved::NotBool { span: e.span, ty });
    }
    Ok(Cond::resolved(expr, reads))
}

/// Parses and resolves a condition over `item`, an input of type `item` (tests, tools).
///
/// # Errors
/// The syntax error or what does not resolve, in words.
pub fn resolve_text(text: &str, item: Ty) -> Result<Cond, String> {
    let e = crate::syntax::parse_expr(text)
        .map_err(|d| format!("invalid condition `{text}`: {}", d.first().map_or("", |d| d.message.as_str())))?;
    resolve(&e, item, &|n| if n == "item" { Name::Input(item) } else { Name::Unknown }).map_err(|u| format!("`{text}`: {u}"))
}

fn walk(e: &Expr, item: Ty, names: &dyn Fn(&str) -> Name, reads: &mut Vec<(String, Ty)>) -> Result<(Expr, Ty), Unresolved> {
    let at = |kind: ExprKind| Expr { kind, span: e.span };
    Ok(match &e.kind {
        ExprKind::Int(_) => (e.clone(), Ty::Int),
        ExprKind::Float(_) => (e.clone(), Ty::Float),
        ExprKind::Bool(_) => (e.clone(), Ty::Bool),
        ExprKind::Str(_) => (e.clone(), Ty::String),
        ExprKind::Duration(_) => (e.clone(), Ty::Duration),
        ExprKind::Name(n) => match names(n) {
            Name::Input(ty) => (at(ExprKind::Name("item".into())), ty),
            Name::Inline(c) => {
                // Written over another `item`: typed again over this one.
                let inner = |m: &str| if m == "item" { Name::Input(item) } else { Name::Unknown };
                walk(c.expr(), item, &inner, reads)?
            }
            Name::Unknown => return Err(Unresolved::UnknownName { span: e.span, name: n.clone() }),
        },
        ExprKind::Field(inner, field) => {
            let (base, ty) = walk(inner, item, names, reads)?;
            let is_item = matches!(&base.kind, ExprKind::Name(n) if n == "item") && ty.is_port();
            let found = if is_item {
                ty.fields().iter().find(|(f, _)| *f == field.node).map(|(_, t)| *t)
            } else {
                // A map's key: a string, `null` when the key is not there.
                (ty == Ty::Map).then_some(Ty::String)
            };
            let Some(t) = found else {
                return Err(Unresolved::NoField { span: field.span, ty, field: field.node.clone() });
            };
            if is_item {
                reads.push((field.node.clone(), t));
            }
            (at(ExprKind::Field(Box::new(base), field.clone())), t)
        }
        ExprKind::Unary(op, inner) => {
            let (x, t) = walk(inner, item, names, reads)?;
            let Some(ty) = unary_type(*op, t) else {
                let (word, need) = if *op == UnaryOp::Neg { ("-", "a number") } else { ("not", "a Bool") };
                return Err(Unresolved::Operand { span: e.span, message: format!("`{word}` takes {need}, not a {t}") });
            };
            (at(ExprKind::Unary(*op, Box::new(x))), ty)
        }
        ExprKind::Binary(op, l, r) => {
            let (l, lt) = walk(l, item, names, reads)?;
            let (r, rt) = walk(r, item, names, reads)?;
            let Some(ty) = binary_type(*op, lt, rt) else {
                return Err(Unresolved::Operand { span: e.span, message: format!("`{}` cannot combine a {lt} and a {rt}", op.as_str()) });
            };
            (at(ExprKind::Binary(*op, Box::new(l), Box::new(r))), ty)
        }
        _ => return Err(Unresolved::Construct { span: e.span }),
    })
}

/// The type of `op` applied to a `t`, or `None` when it does not apply.
pub fn unary_type(op: UnaryOp, t: Ty) -> Option<Ty> {
    match (op, t) {
        (UnaryOp::Neg, Ty::Int | Ty::Float) => Some(t),
        (UnaryOp::Not, Ty::Bool) => Some(Ty::Bool),
        _ => None,
    }
}

/// The type of `l op r`, or `None` when the operator does not take these operands: the
/// static side of what [`super::binary`] computes.
pub fn binary_type(op: BinaryOp, l: Ty, r: Ty) -> Option<Ty> {
    use BinaryOp::*;
    let num = |t: Ty| matches!(t, Ty::Int | Ty::Float);
    Some(match op {
        And | Or if l == Ty::Bool && r == Ty::Bool => Ty::Bool,
        Eq | Ne if l == r || num(l) && num(r) => Ty::Bool,
        // Strings order bytewise, as the one evaluator orders them (conditions and `vigil test` alike).
        Lt | Le | Gt | Ge if num(l) && num(r) || l == r && matches!(l, Ty::Duration | Ty::String) => Ty::Bool,
        Add if l == Ty::String && r == Ty::String => Ty::String,
        Add | Sub if l == Ty::Duration && r == Ty::Duration => Ty::Duration,
        Mul if l == Ty::Duration && r == Ty::Int || l == Ty::Int && r == Ty::Duration => Ty::Duration,
        Div if l == Ty::Duration && r == Ty::Int => Ty::Duration,
        Add | Sub | Mul | Div | Rem if num(l) && num(r) => {
            if l == Ty::Int && r == Ty::Int {
                Ty::Int
            } else {
                Ty::Float
            }
        }
        _ => return None,
    })
}
