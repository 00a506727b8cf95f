//! The one evaluator of the language's expressions, and the one definition of what its
//! operators mean.
//!
//! Three callers evaluate expressions, each over its own names: constant folding (the
//! checker and the planner: template parameters, [`super::fold`]), conditions at run time
//! (an item's fields, [`super::Condition`]) and `vigil test`'s expectations (stage outputs
//! and aggregates, in `testing`). Each is an [`Env`]; everything else — literals,
//! arithmetic, comparisons, `and` / `or` / `not`, string concatenation, reading a map's
//! key — is [`eval`] here, so a `when:` means at run time what it means under `vigil test`
//! and when folded.
//!
//! # Semantics
//!
//! - `Null` is a value not known: a missing field or label, a comparison with NaN, an
//!   operand not known. Operators on `Null` give `Null`, except `and` / `or`, which follow
//!   Kleene's three-valued logic (`true or null` is `true`, `false and null` is `false`,
//!   the left side decides without evaluating the right one when it can), and `==` / `!=`,
//!   which are total (`null == null`; a missing label `!= "x"`).
//! - Integers compute exactly (overflow and division by zero are errors); an Int with a
//!   Float computes in floating point; a result that is not finite (from finite operands)
//!   is an error, an operand that is NaN makes the result `Null`.
//! - Durations add and subtract with durations, multiply and divide by integers, and
//!   compare with durations; strings concatenate with `+` and compare by code point.
//! - Operands an operator does not take are an error ([`EvalError::Operand`]); so is a
//!   construct the environment does not evaluate ([`EvalError::NotConstant`]). A condition
//!   holds only when it is `true`: `Null` and errors do not hold.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::source::Span;
use crate::syntax::ast::{Arg, BinaryOp, Expr, ExprKind, UnaryOp};
use crate::value::{Cond, SecretRef, Value};

/// A value an expression computes with; borrowed from what the environment reads where
/// it can (an item's labels).
#[derive(Clone, Debug)]
pub enum Val<'a> {
    /// Not known (see the module's semantics).
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Milliseconds.
    Duration(u64),
    Str(Cow<'a, str>),
    List(Vec<Val<'a>>),
    /// A map literal (`{ env: "prod" }`).
    Record(BTreeMap<String, Val<'a>>),
    /// An item's string map (annotations, an event's labels).
    Map(&'a BTreeMap<String, String>),
    /// A series' labels, sorted by name.
    Labels(&'a [(String, String)]),
    /// `secret("env:NAME")`: where a secret comes from.
    Secret(SecretRef),
    /// A per-item condition (a Condition parameter's value).
    Condition(Arc<Cond>),
}

/// Why an expression could not be evaluated.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalError {
    /// An operator applied to operands it does not take, an overflow, a division by zero,
    /// or what the environment refuses (E0317 in a constant); the message says which.
    Operand { span: Span, message: String },
    /// A construct the environment does not evaluate (a stage reference or a call in a
    /// constant): the caller decides.
    NotConstant(Span),
}

impl EvalError {
    /// The error in words.
    pub fn message(&self) -> String {
        match self {
            EvalError::Operand { message, .. } => message.clone(),
            EvalError::NotConstant(_) => "not a value here".into(),
        }
    }

    /// Where it happened.
    pub fn span(&self) -> Span {
        match self {
            EvalError::Operand { span, .. } | EvalError::NotConstant(span) => *span,
        }
    }
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// What the names of an expression mean where it is evaluated.
pub trait Env<'a> {
    /// The value of a bare name.
    ///
    /// # Errors
    /// [`EvalError::NotConstant`] when the name has no value here.
    fn name(&self, name: &str, span: Span) -> Result<Val<'a>, EvalError>;

    /// The value of `base.field` where `base` is a bare name (an item, a stage). By
    /// default, the field of the name's value.
    ///
    /// # Errors
    /// As [`Env::name`], or a field the value does not have.
    fn field(&self, base: &str, field: &str, span: Span) -> Result<Val<'a>, EvalError> {
        member(self.name(base, span)?, field, span)
    }

    /// A call `callee(args)`; the environment evaluates the arguments it takes (with
    /// [`eval`]). By default there are no functions.
    ///
    /// # Errors
    /// [`EvalError::NotConstant`] by default; what the function refuses.
    fn call(&self, callee: &str, args: &[Arg], span: Span) -> Result<Val<'a>, EvalError> {
        let _ = (callee, args);
        Err(EvalError::NotConstant(span))
    }
}

/// Evaluates `e` in `env`.
///
/// Recursion follows the expression tree, whose depth `syntax` bounds.
///
/// # Errors
/// See [`EvalError`].
pub fn eval<'a>(e: &Expr, env: &dyn Env<'a>) -> Result<Val<'a>, EvalError> {
    let bad = |message: String| EvalError::Operand { span: e.span, message };
    Ok(match &e.kind {
        ExprKind::Int(i) => Val::Int(*i),
        ExprKind::Float(f) => Val::Float(*f),
        ExprKind::Bool(b) => Val::Bool(*b),
        ExprKind::Str(s) => Val::Str(Cow::Owned(s.value.clone())),
        ExprKind::Duration(d) => Val::Duration(d.millis),
        ExprKind::List(items) => Val::List(items.iter().map(|i| eval(i, env)).collect::<Result<_, _>>()?),
        ExprKind::Map(entries) => {
            let mut m = BTreeMap::new();
            for (k, v) in entries {
                m.insert(k.node.clone(), eval(v, env)?);
            }
            Val::Record(m)
        }
        ExprKind::Name(n) => env.name(n, e.span)?,
        ExprKind::Field(inner, f) => match &inner.kind {
            ExprKind::Name(base) => env.field(base, &f.node, e.span)?,
            _ => member(eval(inner, env)?, &f.node, e.span)?,
        },
        ExprKind::Secret(inner) => match &inner.kind {
            ExprKind::Str(s) => {
                Val::Secret(SecretRef::parse(&s.value).ok_or_else(|| bad(format!("`{}` is not `env:NAME` or `file:PATH`", s.value)))?)
            }
            _ => return Err(bad("`secret(...)` takes a string literal".into())),
        },
        ExprKind::Unary(op, inner) => unary(*op, eval(inner, env)?).map_err(bad)?,
        ExprKind::Binary(op @ (BinaryOp::And | BinaryOp::Or), l, r) => {
            let and = *op == BinaryOp::And;
            let truth = |v: Val<'a>, side: &Expr| match v {
                Val::Bool(b) => Ok(Some(b)),
                Val::Null => Ok(None),
                v => Err(EvalError::Operand { span: side.span, message: format!("`{}` needs Bools, not {}", op.as_str(), v.describe()) }),
            };
            let left = truth(eval(l, env)?, l)?;
            let mut right_err = None;
            let out = logic(and, left, || match eval(r, env).and_then(|v| truth(v, r)) {
                Ok(b) => b,
                Err(err) => {
                    right_err = Some(err);
                    None
                }
            });
            if let Some(err) = right_err {
                return Err(err);
            }
            out.map_or(Val::Null, Val::Bool)
        }
        ExprKind::Binary(op, l, r) => binary(*op, eval(l, env)?, eval(r, env)?).map_err(bad)?,
        ExprKind::Call { callee, args } => match &callee.kind {
            ExprKind::Name(f) => env.call(f, args, e.span)?,
            _ => return Err(EvalError::NotConstant(e.span)),
        },
        ExprKind::Pipe(..) | ExprKind::Error => return Err(EvalError::NotConstant(e.span)),
    })
}

/// `and` and `or`: Kleene's three-valued logic, where `None` is a value not known. The
/// left side decides when it can (`false and x` is false, `true or x` is true, whatever
/// `x` is, and `right` is not evaluated); otherwise the result is known only when the
/// right side decides or both sides are known.
pub fn logic(and: bool, left: Option<bool>, right: impl FnOnce() -> Option<bool>) -> Option<bool> {
    match (and, left) {
        (true, Some(false)) => Some(false),
        (false, Some(true)) => Some(true),
        (true, l) => match (l, right()) {
            (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        (false, l) => match (l, right()) {
            (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

/// Field `field` of a value: a map's key (`Null` when it is not there).
fn member<'a>(v: Val<'a>, field: &str, span: Span) -> Result<Val<'a>, EvalError> {
    Ok(match v {
        Val::Null => Val::Null,
        Val::Map(m) => m.get(field).map_or(Val::Null, |v| Val::Str(Cow::Borrowed(v.as_str()))),
        Val::Labels(l) => l.iter().find(|(k, _)| k == field).map_or(Val::Null, |(_, v)| Val::Str(Cow::Borrowed(v.as_str()))),
        Val::Record(mut m) => m.remove(field).unwrap_or(Val::Null),
        v => return Err(EvalError::Operand { span, message: format!("{} has no field `{field}`", v.describe()) }),
    })
}

/// A unary operator's value.
///
/// # Errors
/// An operand it does not take, an overflow.
pub fn unary<'a>(op: UnaryOp, v: Val<'a>) -> Result<Val<'a>, String> {
    Ok(match (op, v) {
        (_, Val::Null) => Val::Null,
        (UnaryOp::Neg, Val::Int(i)) => Val::Int(i.checked_neg().ok_or("integer overflow")?),
        (UnaryOp::Neg, Val::Float(f)) => Val::Float(-f),
        (UnaryOp::Not, Val::Bool(b)) => Val::Bool(!b),
        (UnaryOp::Neg, v) => return Err(format!("`-` needs a number, not {}", v.describe())),
        (UnaryOp::Not, v) => return Err(format!("`not` needs a boolean, not {}", v.describe())),
    })
}

/// A binary operator's value (`and` and `or` on known or unknown booleans too, without
/// their short circuit: [`eval`] has it).
///
/// # Errors
/// Operands it does not take, an overflow, a division by zero, a result not finite.
pub fn binary<'a>(op: BinaryOp, l: Val<'a>, r: Val<'a>) -> Result<Val<'a>, String> {
    use BinaryOp::*;
    use Val as V;
    let overflow = || "arithmetic overflow".to_owned();
    Ok(match (op, &l, &r) {
        (Eq, a, b) => V::Bool(a.equals(b)),
        (Ne, a, b) => V::Bool(!a.equals(b)),
        (And | Or, V::Bool(_) | V::Null, V::Bool(_) | V::Null) => {
            let known = |v: &Val<'_>| if let V::Bool(b) = v { Some(*b) } else { None };
            logic(op == And, known(&l), || known(&r)).map_or(V::Null, V::Bool)
        }
        (_, V::Null, _) | (_, _, V::Null) if op != And && op != Or => V::Null,
        (Add, V::Str(a), V::Str(b)) => V::Str(Cow::Owned(format!("{a}{b}"))),
        (Add, V::Duration(a), V::Duration(b)) => V::Duration(a.checked_add(*b).ok_or_else(overflow)?),
        (Sub, V::Duration(a), V::Duration(b)) => V::Duration(a.checked_sub(*b).ok_or("a negative duration")?),
        (Mul, V::Duration(a), V::Int(b)) | (Mul, V::Int(b), V::Duration(a)) => {
            V::Duration(u64::try_from(*b).ok().and_then(|b| a.checked_mul(b)).ok_or("a negative or overflowing duration")?)
        }
        (Div, V::Duration(a), V::Int(b)) => match u64::try_from(*b) {
            Ok(0) => return Err("division by zero".into()),
            Ok(b) => V::Duration(a / b),
            Err(_) => return Err("a negative duration".into()),
        },
        (Add | Sub | Mul | Div | Rem, V::Int(a), V::Int(b)) => {
            let (a, b) = (*a, *b);
            V::Int(
                match op {
                    Add => a.checked_add(b),
                    Sub => a.checked_sub(b),
                    Mul => a.checked_mul(b),
                    Div if b == 0 => return Err("division by zero".into()),
                    Div => a.checked_div(b),
                    Rem if b == 0 => return Err("division by zero".into()),
                    _ => a.checked_rem(b),
                }
                .ok_or_else(overflow)?,
            )
        }
        (Add | Sub | Mul | Div | Rem, a, b) if a.number().is_some() && b.number().is_some() => {
            let (a, b) = (a.number().unwrap_or(f64::NAN), b.number().unwrap_or(f64::NAN));
            if a.is_nan() || b.is_nan() {
                return Ok(V::Null);
            }
            let v = match op {
                Add => a + b,
                Sub => a - b,
                Mul => a * b,
                Div => a / b,
                _ => a % b,
            };
            if !v.is_finite() && a.is_finite() && b.is_finite() {
                return Err(if matches!(op, Div | Rem) && b == 0.0 {
                    "division by zero".into()
                } else {
                    "the result is not a finite number".into()
                });
            }
            V::Float(v)
        }
        (Lt | Le | Gt | Ge, a, b) => {
            let ord = match (a, b) {
                (V::Duration(x), V::Duration(y)) => Some(x.cmp(y)),
                (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
                (x, y) if x.number().is_some() && y.number().is_some() => {
                    let (x, y) = (x.number().unwrap_or(f64::NAN), y.number().unwrap_or(f64::NAN));
                    match x.partial_cmp(&y) {
                        Some(o) => Some(o),
                        // NaN: not known.
                        None => return Ok(V::Null),
                    }
                }
                _ => None,
            };
            let Some(ord) = ord else {
                return Err(format!("`{}` cannot compare {} and {}", op.as_str(), l.describe(), r.describe()));
            };
            V::Bool(match op {
                Lt => ord.is_lt(),
                Le => ord.is_le(),
                Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        _ => return Err(format!("`{}` cannot combine {} and {}", op.as_str(), l.describe(), r.describe())),
    })
}

impl<'a> Val<'a> {
    /// The value of a number (not a duration), as a float.
    pub fn number(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value in words, for errors: `a Float`, `null`.
    pub fn describe(&self) -> String {
        match self {
            Val::Null => "null".into(),
            Val::Bool(_) => "a Bool".into(),
            Val::Int(_) => "a Int".into(),
            Val::Float(_) => "a Float".into(),
            Val::Duration(_) => "a Duration".into(),
            Val::Str(_) => "a String".into(),
            Val::List(_) => "a list".into(),
            Val::Record(_) | Val::Map(_) | Val::Labels(_) => "a Map".into(),
            Val::Secret(_) => "a Secret".into(),
            Val::Condition(_) => "a Condition".into(),
        }
    }

    /// The language's type of the value, where it has one the checker names (`None` for
    /// `null`, lists, secrets, conditions).
    pub fn ty(&self) -> Option<crate::types::Ty> {
        use crate::types::Ty;
        Some(match self {
            Val::Float(_) => Ty::Float,
            Val::Int(_) => Ty::Int,
            Val::Bool(_) => Ty::Bool,
            Val::Duration(_) => Ty::Duration,
            Val::Str(_) => Ty::String,
            Val::Map(_) | Val::Labels(_) | Val::Record(_) => Ty::Map,
            _ => return None,
        })
    }

    /// Equality as `==` sees it: numbers by value (`1 == 1.0`; NaN equals nothing), maps
    /// by their entries, `null` only with `null`.
    pub fn equals(&self, other: &Val<'_>) -> bool {
        use Val as V;
        match (self, other) {
            (V::Null, V::Null) => true,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            (a, b) if a.number().is_some() && b.number().is_some() => a.number() == b.number(),
            (V::Duration(a), V::Duration(b)) => a == b,
            (V::Str(a), V::Str(b)) => a == b,
            (V::List(a), V::List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y)),
            (V::Secret(a), V::Secret(b)) => a == b,
            (V::Condition(a), V::Condition(b)) => a == b,
            (a, b) => match (a.entries(), b.entries()) {
                (Some(x), Some(y)) => x.len() == y.len() && x.iter().zip(&y).all(|((k1, v1), (k2, v2))| k1 == k2 && v1.equals(v2)),
                _ => false,
            },
        }
    }

    /// A map's entries in key order.
    fn entries(&self) -> Option<Vec<(&str, Val<'_>)>> {
        Some(match self {
            Val::Record(m) => m.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
            Val::Map(m) => m.iter().map(|(k, v)| (k.as_str(), Val::Str(Cow::Borrowed(v.as_str())))).collect(),
            Val::Labels(l) => {
                let mut e: Vec<_> = l.iter().map(|(k, v)| (k.as_str(), Val::Str(Cow::Borrowed(v.as_str())))).collect();
                e.sort_by(|a, b| a.0.cmp(b.0));
                e
            }
            _ => return None,
        })
    }

    /// A constant value as the evaluator sees it.
    pub fn from_value(v: &Value) -> Val<'static> {
        match v {
            Value::Null => Val::Null,
            Value::Int(i) => Val::Int(*i),
            Value::Float(f) => Val::Float(*f),
            Value::Bool(b) => Val::Bool(*b),
            Value::Str(s) => Val::Str(Cow::Owned(s.clone())),
            Value::Duration(ms) => Val::Duration(*ms),
            Value::List(items) => Val::List(items.iter().map(Val::from_value).collect()),
            Value::Map(m) => Val::Record(m.iter().map(|(k, v)| (k.clone(), Val::from_value(v))).collect()),
            Value::Secret(s) => Val::Secret(s.clone()),
            Value::Condition(c) => Val::Condition(c.clone()),
        }
    }

    /// The value as a constant.
    pub fn into_value(self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Int(i) => Value::Int(i),
            Val::Float(f) => Value::Float(f),
            Val::Duration(ms) => Value::Duration(ms),
            Val::Str(s) => Value::Str(s.into_owned()),
            Val::List(items) => Value::List(items.into_iter().map(Val::into_value).collect()),
            Val::Record(m) => Value::Map(m.into_iter().map(|(k, v)| (k, v.into_value())).collect()),
            Val::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), Value::Str(v.clone()))).collect()),
            Val::Labels(l) => Value::Map(l.iter().map(|(k, v)| (k.clone(), Value::Str(v.clone()))).collect()),
            Val::Secret(s) => Value::Secret(s),
            Val::Condition(c) => Value::Condition(c),
        }
    }
}

/// `==` (see [`Val::equals`]).
impl PartialEq for Val<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.equals(other)
    }
}

/// As `vigil test` shows what it found: numbers as they are (`0.5`, `3`), strings quoted,
/// long lists shortened.
impl std::fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |f: &mut std::fmt::Formatter<'_>, items: &[String], more: usize| {
            if more > 0 {
                write!(f, "[{}, ... {more} more]", items.join(", "))
            } else {
                write!(f, "[{}]", items.join(", "))
            }
        };
        match self {
            Val::Null => f.write_str("null"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Float(x) => write!(f, "{x}"),
            Val::Duration(ms) => f.write_str(&crate::time::format_duration_source(*ms)),
            Val::Str(s) => write!(f, "{s:?}"),
            Val::List(l) => {
                let shown: Vec<String> = l.iter().take(8).map(ToString::to_string).collect();
                list(f, &shown, l.len().saturating_sub(8))
            }
            Val::Record(_) | Val::Map(_) | Val::Labels(_) => {
                let e = self.entries().unwrap_or_default();
                write!(f, "{{{}}}", e.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))
            }
            Val::Secret(s) => write!(f, "{s}"),
            Val::Condition(c) => f.write_str(c.text()),
        }
    }
}
